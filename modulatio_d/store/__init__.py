"""The vault on disk: one reader/writer per kind of file."""

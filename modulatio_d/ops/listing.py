"""A project's files as the commands that read every plan walk them: sorted by name, each
with its lstat (the row cache's key, store/rowcache.py).

The same files, in the same order, as `Vault.files` sorted by name (the `*.md` names of
the folder not starting with a dot, none when the folder cannot be listed), read
through the same `fs.each_entry` (beneath the vault's root, never following a link); only
cheaper to make: a warm command on 10,000 plans is mostly its listing, and the path
joined by hand costs less than os.path.join a file.
"""

from __future__ import annotations

import os

from modulatio_d.store import fs
from modulatio_d.store.vault import Vault

Entry = fs.Entry  # what `files` gives: name, path, st (the lstat) and stat()


def files(vault: Vault, project: str, kind: str = "plans") -> list[Entry]:
    """The `*.md` files of the project's `kind` folder (plans, cron, tickets) by name."""
    folder = vault.project_dir(project) / kind
    base = os.path.join(os.fspath(folder), "")
    try:
        found = sorted(fs.each_entry(folder, ".md"))
    except OSError:  # as Vault.files: a folder that cannot be listed lists nothing
        return []
    return [Entry(name, base + name, st) for name, st in found if not name.startswith(".")]

"""One module per group of subcommands; see cli.py for the contract."""

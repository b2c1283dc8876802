"""The `modulatio` command: argparse and printing only; main.py reads argv and exits,
one module per group of subcommands registers its parsers."""

from modulatio_d.cli.main import Context, build_parser, main

__all__ = ["Context", "build_parser", "main"]

"""The `modulatio` command: the only place that reads argv and the environment,
prints and exits.

Each group of subcommands lives in modulatio_d/cli/<group>.py with a
`register(subparsers)` that adds its parsers; a parser's `run(args, ctx)`
returns the exit code. Command modules import heavy libraries inside `run`,
so that `modulatio heartbeat`, run by monitors every few seconds, starts fast.

Exit codes: 0 done, 1 the thing asked for failed or was found wrong (a bad
file, a refused transition, a stale heartbeat), 2 usage, 3 a system failure
(an OSError the command could not get past).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TextIO

from modulatio_d import __version__
from modulatio_d.core.controls import neutralise

EXIT_SYSTEM = 3
GROUPS = ("vault_cmds", "plans", "tickets", "daemon", "cron", "operate", "doctor")


@dataclass
class Context:
    environ: dict[str, str]
    cwd: Path
    out: TextIO = field(default=sys.stdout)
    err: TextIO = field(default=sys.stderr)
    _warned: bool = field(default=False, repr=False)

    def vault(self, args: argparse.Namespace):
        from modulatio_d.store.vault import find_vault
        found = find_vault(getattr(args, "vault", None), self.environ, self.cwd)
        self._warn_root(found.root)
        return found

    def _warn_root(self, root: Path) -> None:
        """Root acting in someone else's vault: what it creates belongs to root (the
        owner's daemon may then be locked out of it), and it acts on files whoever
        writes the vault chose. Said once, on stderr."""
        if os.geteuid() != 0 or self._warned:
            return
        try:
            owner = os.stat(root).st_uid
        except OSError:
            return
        if owner == 0:
            return
        from modulatio_d.store.trust import user_name
        self._warned = True
        name = user_name(owner)
        print(f"modulatio: warning: running as root in a vault owned by {name} (uid {owner}): "
              f"what this command creates belongs to root; run it as {name} "
              f"(`runuser -u {name} -- modulatio ...`)", file=self.err)

    def print(self, *parts: object) -> None:
        print(*parts, file=self.out)

    def say(self, line: str) -> None:
        """One line of text for people: vault text in it is shown with its control
        characters escaped (core/controls.py). JSON goes through `print`, exact."""
        print(neutralise(line), file=self.out)


def vault_option() -> argparse.ArgumentParser:
    """The parent parser every command shares: --vault."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--vault", metavar="PATH",
                        help="the vault (default: $MODULATIO_VAULT, else the nearest folder "
                             "at or above here holding .modulatio/)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modulatio",
        description="Run the approved Markdown plans of a vault, one sub-objective at a time.")
    parser.add_argument("--version", action="version", version=f"modulatio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parent = vault_option()
    for group in GROUPS:
        import_module(f"modulatio_d.cli.{group}").register(sub, parent)
    return parser


def main(argv: list[str] | None = None, ctx: Context | None = None) -> int:
    from modulatio_d.core.errors import ModulatioError

    ctx = ctx or Context(environ=dict(os.environ), cwd=Path.cwd())
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args, ctx) or 0)
    except ModulatioError as e:
        print(f"modulatio: {neutralise(str(e))}", file=ctx.err)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`modulatio status | head`): nothing more to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        where = f" {e.filename}:" if e.filename else ""
        print(f"modulatio: system error:{where} {e.strerror or e}", file=ctx.err)
        return EXIT_SYSTEM

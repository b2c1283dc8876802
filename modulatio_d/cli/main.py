"""The `modulatio` command: the only place that reads argv and the environment,
prints and exits.

Each group of subcommands lives in modulatio_d/cli/<group>.py with a
`register(subparsers, parent)` that adds its parsers; a parser's `run(args, ctx)`
returns the exit code. Command modules import heavy libraries inside `run`,
so that `modulatio heartbeat`, run by monitors every few seconds, starts fast.

Global options (`--vault`, `--json`, `--log-level`) are accepted before the
command and after it: the top parser and every command's parser define them
with `default=SUPPRESS`, so whichever was given survives argparse's copying of
the subcommand's namespace over the top one; `main` fills in the defaults and
refuses a global option the command has no use for (`--json` on `daemon`).

Exit codes (docs/cli.md, "Exit codes", is the reference): 0 done, 1 the thing
asked for failed or was found wrong (a bad file, a refused transition), 2
usage (a bad flag or argument, a name that names nothing, no vault there), 3 a
system failure (an OSError the command could not get past, a PermissionError
included). `heartbeat` speaks the monitoring-plugin dialect instead: 0 OK, 1
WARNING, 2 CRITICAL, 3 UNKNOWN (every error of its own is UNKNOWN).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import NoReturn, TextIO

from modulatio_d import __version__
from modulatio_d.cli.lookup import close_match
from modulatio_d.core.controls import neutralise

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_SYSTEM = 3
GROUPS = ("vault_cmds", "plans", "tickets", "daemon", "cron", "triggers", "hooks", "operate",
          "control", "pausing", "doctor", "importing", "serve", "completion")
COMMANDS = {"init": "vault_cmds", "validate": "vault_cmds", "prune": "vault_cmds",
            "plan": "plans", "project": "plans", "ticket": "tickets", "daemon": "daemon",
            "heartbeat": "daemon", "cron": "cron", "trigger": "triggers", "hooks": "hooks",
            "status": "operate", "metrics": "operate", "ps": "operate", "stop": "operate",
            "systemd-unit": "operate", "workers": "control", "kickoff": "control",
            "events": "control", "logs": "control", "pause": "pausing", "resume": "pausing",
            "drain": "pausing", "doctor": "doctor", "import": "importing", "serve": "serve"}
"""The group that registers each command: a command's process builds only its group's
parsers (the whole tree costs milliseconds; tests/unit/test_cli_lazy.py keeps this
exact). Completion walks the whole tree, so it is not here."""
GLOBAL_DESTS = ("vault", "json", "log_level")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass
class Context:
    environ: dict[str, str]
    cwd: Path
    out: TextIO = field(default=sys.stdout)
    err: TextIO = field(default=sys.stderr)
    _warned: bool = field(default=False, repr=False)

    def vault(self, args: argparse.Namespace):
        """--vault, else $MODULATIO_VAULT, else the nearest folder holding .modulatio/.

        A folder named explicitly must be a vault: one without `.modulatio/` is
        refused rather than taken as an empty vault (a typo would otherwise show
        "no plans" and exit 0)."""
        from modulatio_d.core.errors import UsageError
        from modulatio_d.store.vault import META, find_vault

        chosen = getattr(args, "vault", None) or self.environ.get("MODULATIO_VAULT")
        if chosen:
            path = self.cwd / Path(chosen).expanduser()
            source = "--vault" if getattr(args, "vault", None) else "MODULATIO_VAULT"
            if not path.is_dir():
                raise UsageError(f"vault {path} is not a folder (from {source}): create it "
                                 f"with `modulatio init {path}`")
            if not (path / META).is_dir():
                raise UsageError(f"{path} is not a vault: it has no {META}/ folder (from "
                                 f"{source}); make it one with `modulatio init {path}`")
            found = find_vault(str(path), self.environ, self.cwd)
        else:
            found = find_vault(None, self.environ, self.cwd)
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

    def note(self, text: str) -> None:
        print(f"modulatio: note: {text}", file=self.err)


class ArgError(Exception):
    """A usage error argparse found, carried to `main` so it prints to ctx.err."""

    def __init__(self, parser: argparse.ArgumentParser, message: str):
        super().__init__(message)
        self.parser = parser


class Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for choices, and errors raised, not printed.

    `usage_exit` is the exit code of a usage error: 2, or 3 (UNKNOWN) for
    `heartbeat`, whose callers are monitors.
    """

    usage_exit = EXIT_USAGE

    def _check_value(self, action: argparse.Action, value: object) -> None:
        if action.choices is None or value in action.choices:
            return
        shown = [str(c) for c in action.choices if not str(c).startswith("__")]
        close = close_match(str(value), shown)
        hint = f"; did you mean {close!r}?" if close else ""
        raise argparse.ArgumentError(
            action, f"invalid choice: {value!r}{hint} (choose from {', '.join(shown)})")

    def error(self, message: str) -> NoReturn:
        raise ArgError(self, message)


def vault_option() -> argparse.ArgumentParser:
    """The parent parser every command that reads a vault shares: --vault."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--vault", metavar="PATH", default=argparse.SUPPRESS,
                        help="the vault (default: $MODULATIO_VAULT, else the nearest folder "
                             "at or above here holding .modulatio/)").complete = "dir"
    return parent


def _add_globals(parser: argparse.ArgumentParser, have: set[str]) -> None:
    if "vault" not in have and parser.prog == "modulatio":
        parser.add_argument("--vault", metavar="PATH", default=argparse.SUPPRESS,
                            help="the vault (default: $MODULATIO_VAULT, else the nearest "
                                 "folder at or above here holding .modulatio/)"
                            ).complete = "dir"
    if "json" not in have and parser.prog == "modulatio":
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="JSON output, for the commands that have it")
    if "log_level" not in have:
        parser.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS,
                            metavar="L",
                            help="log messages from this level up to stderr: debug, info, "
                                 "warning (default; the daemon's default is info), error")


def leaves(parser: argparse.ArgumentParser, path: str = "modulatio"):
    """(`modulatio plan new`, its parser) for every command that runs something."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from leaves(child, f"{path} {name}")


def _command_of(argv: list[str]) -> str | None:
    """The command word of `argv`: its first word that is not a global option or the
    value of one."""
    words = [str(a) for a in argv]
    i = 0
    while i < len(words):
        if words[i] in ("--vault", "--log-level"):
            i += 2
        elif words[i] == "--json" or words[i].startswith(("--vault=", "--log-level=")):
            i += 1
        else:
            return words[i]
    return None


@cache
def build_parser(group: str | None = None) -> argparse.ArgumentParser:
    """The whole command tree (or the commands of one `group` alone), built once per
    process: argparse never changes a parser while parsing, and building the tree costs
    milliseconds (gettext looks up its catalogue on every help string) that a process
    running many commands in-process (the test suite, `modulatio` called from Python)
    would otherwise pay each time."""
    parser = Parser(
        prog="modulatio",
        description="Run the approved Markdown plans of a vault, one sub-objective at a time.",
        epilog="Global options go before or after the command: `modulatio --vault V status` "
               "is `modulatio status --vault V`.")
    parser.add_argument("--version", action="version", version=f"modulatio {__version__}")
    _add_globals(parser, set())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parent = vault_option()
    for name in [group] if group else GROUPS:
        import_module(f"modulatio_d.cli.{name}").register(sub, parent)
    for _, leaf in leaves(parser):
        have = {a.dest for a in leaf._actions}
        _add_globals(leaf, have)
        for action in leaf._actions:
            if action.dest in GLOBAL_DESTS:
                action.default = argparse.SUPPRESS
        leaf.set_defaults(accepts=frozenset(d for d in GLOBAL_DESTS if d in have | {"log_level"}),
                          leaf=leaf)
    return parser


def _check_globals(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for dest in GLOBAL_DESTS:
        if hasattr(args, dest) and dest not in args.accepts:
            flag = "--" + dest.replace("_", "-")
            why = {"vault": "it takes no vault", "json": "it has no JSON output"}[dest]
            command = " ".join(c for c in (args.command, *_subcommands(args)) if c)
            raise ArgError(parser, f"`modulatio {command}` does not take {flag}: {why}")
    args.vault = getattr(args, "vault", None)
    args.json = getattr(args, "json", False)
    args.log_level = getattr(args, "log_level", None)


def _subcommands(args: argparse.Namespace) -> list[str]:
    return [getattr(args, k) for k in vars(args) if k.endswith("_command")]


def _setup_logging(args: argparse.Namespace, ctx: Context) -> None:
    # The daemon sets up its own (text or JSON); other commands log only when asked.
    if args.log_level and args.command != "daemon":
        import logging
        handler = logging.StreamHandler(ctx.err)
        handler.setFormatter(logging.Formatter("modulatio: %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(args.log_level.upper())


def main(argv: list[str] | None = None, ctx: Context | None = None) -> int:
    ctx = ctx or Context(environ=dict(os.environ), cwd=Path.cwd())
    word = _command_of(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser(COMMANDS.get(word))  # another word: the whole tree says why
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the command's parser: its usage, its exit code (heartbeat's 3)
            raise ArgError(getattr(args, "leaf", parser),
                           f"unrecognized arguments: {' '.join(extra)}")
        _check_globals(getattr(args, "leaf", parser), args)
    except ArgError as e:
        e.parser.print_usage(ctx.err)
        print(f"{e.parser.prog}: error: {e}", file=ctx.err)
        return e.parser.usage_exit
    _setup_logging(args, ctx)
    args.parser = parser  # for `__complete`, which walks the tree it was parsed with
    return _run(args, ctx)


def _run(args: argparse.Namespace, ctx: Context) -> int:
    from modulatio_d.core.errors import ModulatioError, NotFound

    try:
        return int(args.run(args, ctx) or 0)
    except NotFound as e:
        from modulatio_d.cli.lookup import suggest_id
        print(f"modulatio: {e}{suggest_id(args, ctx, e)}", file=ctx.err)
        return _unknown_if_probe(args, e.exit_code)
    except ModulatioError as e:
        print(f"modulatio: {neutralise(str(e))}", file=ctx.err)
        return _unknown_if_probe(args, e.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`modulatio status | head`): nothing more to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        where = f" {e.filename}:" if e.filename else ""
        print(f"modulatio: system error:{where} {e.strerror or e}", file=ctx.err)
        return _unknown_if_probe(args, EXIT_SYSTEM)


def _unknown_if_probe(args: argparse.Namespace, code: int) -> int:
    """A monitoring probe's own errors are UNKNOWN (3), never WARNING or CRITICAL."""
    return 3 if getattr(args, "monitoring", False) else code

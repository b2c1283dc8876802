"""`modulatio init` and `modulatio validate`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("init", help="make a new vault")
    p.add_argument("path", type=Path, help="the folder (made if missing)").complete = "dir"
    p.add_argument("--example", action="store_true",
                   help="copy the example vault shipped with the package (offline, runnable)")
    p.add_argument("--group", metavar="NAME",
                   help="share the vault with group NAME: setgid folders, group-writable, "
                        "nothing for others, trusted_group NAME in the config")
    p.set_defaults(run=run_init)

    p = sub.add_parser("validate", parents=[parent],
                       help="check every plan, cron entry, ticket and the config: syntax and "
                            "meaning (zones, agents, reflectors, folders, schedules)")
    p.add_argument("--json", action="store_true",
                   help="a JSON list of problems (path, line, reason, hint, severity), "
                        "for scripts")
    p.add_argument("--strict", action="store_true",
                   help="warnings fail too (exit 1), not only errors")
    p.set_defaults(run=run_validate)


def run_init(args: argparse.Namespace, ctx) -> int:
    from modulatio_d.ops.init import init

    vault = init(args.path, example=args.example, group=args.group)
    ctx.print(f"vault ready at {vault.root}")
    return 0


def run_validate(args: argparse.Namespace, ctx) -> int:
    from modulatio_d.ops.validate import Severity, validate

    vault = ctx.vault(args)
    from modulatio_d.cli.progress import reporter

    tick, done = reporter(ctx.err, "validate")
    try:
        problems = validate(vault, ctx.environ, tick=tick)
    finally:
        done()
    errors = sum(p.severity is Severity.ERROR for p in problems)
    warnings = len(problems) - errors
    code = 1 if errors or (warnings and args.strict) else 0
    if args.json:
        ctx.print(json.dumps([p.as_dict() for p in problems], indent=2))
        return code
    for problem in problems:
        ctx.say(str(problem))
    also = f" and {warnings} warning(s)" if warnings else ""
    if errors:
        ctx.print(f"{errors} problem(s){also} in {vault.root}")
    elif warnings:
        ctx.print(f"{vault.root}: every file is valid, with {warnings} warning(s)"
                  + (" (--strict: they fail)" if args.strict else ""))
    else:
        ctx.print(f"{vault.root}: every file is valid")
    return code

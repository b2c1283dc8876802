"""`modulatio init` and `modulatio validate`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("init", help="make a new vault")
    p.add_argument("path", type=Path, help="the folder (made if missing)")
    p.add_argument("--example", action="store_true",
                   help="copy the example vault shipped with the package (offline, runnable)")
    p.add_argument("--group", metavar="NAME",
                   help="share the vault with group NAME: setgid folders, group-writable, "
                        "nothing for others, trusted_group NAME in the config")
    p.set_defaults(run=run_init)

    p = sub.add_parser("validate", parents=[parent],
                       help="check every plan, cron entry, ticket and the config")
    p.add_argument("--json", action="store_true",
                   help="a JSON list of problems (path, line, reason, hint), for scripts")
    p.set_defaults(run=run_validate)


def run_init(args: argparse.Namespace, ctx) -> int:
    from modulatio_d.ops.init import init

    vault = init(args.path, example=args.example, group=args.group)
    ctx.print(f"vault ready at {vault.root}")
    return 0


def run_validate(args: argparse.Namespace, ctx) -> int:
    from modulatio_d.ops.validate import validate

    vault = ctx.vault(args)
    problems = validate(vault)
    if args.json:
        ctx.print(json.dumps([{"path": str(p.path), "line": p.line, "reason": p.reason,
                               "hint": p.hint} for p in problems], indent=2))
        return 1 if problems else 0
    for problem in problems:
        ctx.say(str(problem))
    if problems:
        ctx.print(f"{len(problems)} problem(s) in {vault.root}")
        return 1
    ctx.print(f"{vault.root}: every file is valid")
    return 0

"""`modulatio import modulatio|modulatio-cron`: a Modulatio vault brought over
(ops/modulatio_import.py; docs/migrating-from-modulatio.md)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    i = sub.add_parser("import", help="bring over what of another tool's vault is not read "
                                      "natively")
    isub = i.add_subparsers(dest="import_command", metavar="SOURCE", required=True)
    for name, what in (("modulatio", "a Modulatio vault: report how each plan reads (they are "
                                     "read as they are) and import cron-config.json"),
                       ("modulatio-cron", "only Modulatio's cron-config.json: each job becomes "
                                          "a cron entry, once")):
        p = isub.add_parser(name, parents=[parent], help=what)
        p.add_argument("--dry-run", action="store_true",
                       help="say per file what would change; write nothing")
        p.add_argument("--json", action="store_true", help="a JSON list of changes, for "
                                                           "scripts")
        p.set_defaults(run=run_import, source=name)


def run_import(args, ctx) -> int:
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops import modulatio_import as mi

    vault = ctx.vault(args)
    if args.source == "modulatio":
        changes = mi.import_all(vault, utcnow(), args.dry_run)
    else:
        changes = mi.import_cron(vault, utcnow(), args.dry_run)
    if args.json:
        ctx.print(json.dumps([c.as_dict() for c in changes], indent=2))
    else:
        for change in changes:
            ctx.say(str(change))
        made = sum(c.action == "create" for c in changes)
        ctx.print(f"{made} entr{'y' if made == 1 else 'ies'} "
                  f"{'to create (dry run)' if args.dry_run else 'created'}, "
                  f"{len(changes) - made} other file(s) reported")
    return 1 if any(c.action in ("skip", "refused") for c in changes) else 0

"""`modulatio init`, `modulatio validate` and `modulatio prune`."""

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

    p = sub.add_parser("prune", parents=[parent],
                       help="archive (or remove) finished plans and old rotated event logs "
                            "(docs/operations.md, \"Retention\")")
    p.add_argument("--older-than", metavar="AGE",
                   help="finished plans unchanged for this long, e.g. 30d (default: the "
                        "config's retention.older_than, else 30d)")
    p.add_argument("--keep-last", metavar="N", type=int,
                   help="keep the N most recent finished plans of each project whatever "
                        "their age (default: the config's retention.keep_last, else 0)")
    p.add_argument("--project", metavar="P", action="append",
                   help="only this project (repeatable; default: all)").complete = "project"
    p.add_argument("--remove", action="store_true",
                   help="delete instead of moving to <PROJECT>/archive/<YYYY>/<MM>/ "
                        "(also the config's retention.archive: false)")
    p.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    p.add_argument("--json", action="store_true", help="the report as JSON, for scripts")
    p.set_defaults(run=run_prune)


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


def run_prune(args: argparse.Namespace, ctx) -> int:
    from dataclasses import asdict

    from modulatio_d.cli.lookup import project_code
    from modulatio_d.core.checks import parse_duration
    from modulatio_d.core.errors import UsageError
    from modulatio_d.core.times import utcnow
    from modulatio_d.store import config
    from modulatio_d.store.events import EventLog
    from modulatio_d.store.retention import prune

    vault = ctx.vault(args)
    kept = config.load(vault.config_path).retention
    try:
        older = parse_duration(args.older_than) if args.older_than else \
            kept.older_than or 30 * 86400.0
    except ValueError as e:
        raise UsageError(f"--older-than: {e}") from None
    keep = kept.keep_last if args.keep_last is None else args.keep_last
    if keep < 0:
        raise UsageError("--keep-last must be a whole number >= 0")
    projects = [project_code(vault, p, ctx) for p in args.project] if args.project \
        else vault.projects()
    report = prune(vault, projects, utcnow(), older, keep, remove=args.remove or not kept.archive,
                   dry_run=args.dry_run, notify=EventLog(vault.events_path))
    if args.json:
        ctx.print(json.dumps({**asdict(report), "dry_run": args.dry_run}, indent=2))
        return 1 if report.busy else 0
    if report.busy:
        ctx.say("another prune is running (.modulatio/retention.lock is held): try later")
        return 1
    verb = ("would remove" if report.removed else "would archive") if args.dry_run else \
        ("removed" if report.removed else "archived")
    for plan_id in report.archived:
        ctx.say(f"{verb} {plan_id}")
    for name in report.events_removed:
        ctx.say(f"{'would remove' if args.dry_run else 'removed'} .modulatio/{name}")
    for why in report.skipped:
        ctx.say(f"kept {why}")
    ctx.print(f"{len(report.archived)} plan(s) {verb}, {len(report.events_removed)} event "
              f"log(s) {'to remove' if args.dry_run else 'removed'}")
    return 0

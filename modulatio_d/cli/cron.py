"""`modulatio cron add|list|remove|enable|disable|next`: cron entries in the vault."""

from __future__ import annotations

import argparse
import json

from modulatio_d.cli import entry_cmds


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    group = sub.add_parser("cron", help="add, list, remove, enable, disable and preview "
                                        "cron entries")
    csub = group.add_subparsers(dest="cron_command", metavar="ACTION", required=True)

    p = csub.add_parser("add", parents=[parent], help="add a cron entry; prints its id",
                        description="Add a cron entry: a kickoff plan is created for each "
                                    "scheduled time. Example: modulatio cron add SALES "
                                    '"Send weekly follow-up" --schedule "0 6 * * 1"')
    p.add_argument("project", help="project code, e.g. SALES (an existing folder that "
                   "differs only in case is used)").complete = "project"
    p.add_argument("objective", help="what each kickoff is for; its title")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--schedule", metavar="EXPR",
                      help='5 cron fields ("0 6 * * *"), @hourly @daily @weekly @monthly '
                           '@yearly, or Modulatio\'s words ("daily 06:00", "weekly mon 09:00", '
                           '"30m")')
    when.add_argument("--every", metavar="DURATION",
                      help="an interval instead: e.g. 90m, fired at --start + k * DURATION")
    p.add_argument("--start", metavar="TIME", help="with --every: the first time it fires "
                   "(ISO 8601; default: now)")
    p.add_argument("--jitter", metavar="DURATION", help="fire each time up to this much later, "
                   "the same delay on every daemon (e.g. 5m)")
    p.add_argument("--timezone", metavar="TZ",
                   help="IANA zone, e.g. Europe/Berlin (default: the vault config's, "
                        "else this host's, written into the entry)")
    p.add_argument("--step", metavar="CMD", action="append", dest="steps", default=[],
                   help="a shell command for each kickoff (repeatable, in order)")
    p.add_argument("--template", metavar="PLAN_ID",
                   help="copy the sub-objectives of this plan of the project into each kickoff"
                   ).complete = "plan"
    p.add_argument("--catch-up", choices=("latest", "all", "skip"), default="latest",
                   help="after downtime: fire the latest missed time (default), all of them "
                        "(at most 100), or none")
    p.add_argument("--overlap", choices=("skip", "allow"), default=None,
                   help="while an earlier kickoff is not final: skip the time (default) "
                        "or fire anyway")
    p.add_argument("--draft", action="store_true",
                   help="create kickoffs as drafts that a person approves")
    p.set_defaults(run=run_add)

    p = csub.add_parser("list", parents=[parent], help="list cron entries with their next fire")
    p.add_argument("--project", metavar="P", help="only this project").complete = "project"
    p.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    p.set_defaults(run=run_list)

    entry_cmds.register(csub, parent, "cron")  # remove, enable, disable

    p = csub.add_parser("next", parents=[parent],
                        help="preview the next fire times, in the entry's zone and in UTC")
    p.add_argument("id", help="the cron entry id").complete = "cron"
    p.add_argument("-n", type=int, default=5, metavar="N", help="how many (default 5)")
    p.add_argument("--after", metavar="TIME",
                   help="start after this ISO time instead of now, e.g. 2025-03-29T12:00+01:00")
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    p.set_defaults(run=run_next)


def run_add(args, ctx) -> int:
    from modulatio_d.cli.lookup import project_code
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops import cron
    from modulatio_d.store.events import EventLog
    from modulatio_d.store.zones import host_zone

    vault = ctx.vault(args)
    overlap = args.overlap or "skip"
    project = project_code(vault, args.project, ctx, new_ok=True)
    entry = cron.add_entry(
        vault, project, args.objective, args.schedule, utcnow(), timezone=args.timezone,
        steps=args.steps, template=args.template, catch_up=args.catch_up, overlap=overlap,
        approve=not args.draft, host_zone=host_zone(ctx.environ),
        timing={"every": args.every, "start": args.start, "jitter": args.jitter})
    EventLog(vault.events_path)("cron_added", project=entry.project, cron=entry.id,
                                schedule=entry.schedule, timezone=entry.timezone)
    if args.catch_up == "all" and args.overlap is None:
        ctx.err.write("modulatio: note: with overlap skip (the default) a catch-up fires one "
                      "kickoff and skips the rest while it runs; add --overlap allow to fire "
                      "them all\n")
    ctx.print(entry.id)
    return 0


def run_list(args, ctx) -> int:
    from modulatio_d.cli.lookup import project_code
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops import cron
    from modulatio_d.store.zones import host_zone

    vault = ctx.vault(args)
    project = project_code(vault, args.project, ctx) if args.project else None
    rows = cron.entry_rows(vault, utcnow(), host_zone(ctx.environ), project)
    if args.json:
        ctx.print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        if not r["valid"]:
            ctx.say(f"{r['id']:<16} INVALID  {r['error']}")
            continue
        state = "enabled" if r["enabled"] else "disabled"
        ctx.say(f"{r['id']:<16} {r['schedule']:<16} {r['timezone']:<18} {state:<8} "
                  f"last {r['last_fired_for'] or '-':<25} next {r['next_fire'] or '-':<25} "
                  f"{r['objective']}")
    return 0


def run_next(args, ctx) -> int:
    from datetime import UTC, datetime

    from modulatio_d.core.errors import UsageError
    from modulatio_d.core.times import parse_time, utcnow
    from modulatio_d.ops import cron
    from modulatio_d.store.zones import host_zone

    vault = ctx.vault(args)
    if args.n < 1:
        raise UsageError(f"-n {args.n}: give at least 1")
    after = utcnow()
    if args.after:
        after = parse_time(args.after)
        if after is None:
            raise UsageError(f"--after {args.after!r} is not an ISO time such as "
                             f"2025-03-29T12:00:00+01:00")
    p = cron.preview(vault, args.id, after, args.n, host_zone(ctx.environ))
    rows = p.fires()
    if args.json:
        ctx.print(json.dumps({"id": p.entry.id, "timezone": str(getattr(p.zone, "key", p.zone)),
                              "enabled": p.entry.enabled, "fires": rows}, indent=2))
        return 0
    if not p.entry.enabled:
        ctx.err.write(f"modulatio: note: {p.entry.id} is disabled: it fires nothing until "
                      "enabled\n")
    for r in rows:
        t = datetime.fromisoformat(r["local"])
        jittered = f"  (scheduled {r['scheduled_for']})" if "scheduled_for" in r else ""
        ctx.print(f"{t.strftime('%a')} {r['local']}  {t.astimezone(UTC).strftime('%a')} "
                  f"{r['utc']}{jittered}")
    return 0

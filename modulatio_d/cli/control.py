"""`modulatio workers|kickoff|events|logs`: steering the pool, running one plan now,
watching what happens."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("workers", parents=[parent],
                       help="show or set this host's worker pool size (stored in the vault; "
                            "the running `daemon --workers` follows it within a second)")
    p.add_argument("size", nargs="?", metavar="N",
                   help="the new size, 0 (a pool that runs nothing) to 64; shrinking lets "
                        "the surplus workers finish their step first")
    p.add_argument("--host", metavar="NAME",
                   help="the host whose size to set (default: this one)")
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    p.set_defaults(run=run_workers)

    p = sub.add_parser("kickoff", parents=[parent],
                       help="claim one plan and run it now, in the foreground, its step "
                            "output on the terminal (Ctrl-C leaves it resumable)")
    p.add_argument("plan", metavar="PLAN", help="the plan id (PROJECT-P-NNN)").complete = "plan"
    p.add_argument("--dry-run", action="store_true",
                   help="print what would run, in order, with the resolved commands, cwd "
                        "and env; claim and run nothing")
    p.add_argument("--json", action="store_true", help="with --dry-run: one JSON object")
    p.set_defaults(run=run_kickoff)

    p = sub.add_parser("events", parents=[parent],
                       help="events.jsonl, one readable line per event; --follow for new ones")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing events as they are written (across a rotation of "
                        "events.jsonl) until Ctrl-C")
    since = p.add_mutually_exclusive_group()
    since.add_argument("--since", metavar="TIME",
                       help="events at or after TIME: an ISO time (2026-12-02T10:00Z) or an "
                            "age (30m, 2h, 1d); found by bisection, not by reading the file")
    since.add_argument("--last", type=int, metavar="N",
                       help="the last N matching events (default 20 without --since)")
    p.add_argument("--type", action="append", default=[], metavar="T",
                   help="only events of type T (repeatable: step_started, plan_completed...)")
    p.add_argument("--plan", metavar="ID", help="only events of this plan").complete = "plan"
    p.add_argument("--project", metavar="CODE",
                   help="only events of this project").complete = "project"
    p.add_argument("--json", action="store_true", help="the events' JSON lines as they are")
    p.set_defaults(run=run_events)

    p = sub.add_parser("logs", parents=[parent],
                       help="a plan's step output (its .runs/ logs); --follow the running step")
    p.add_argument("plan", metavar="PLAN", help="the plan id (PROJECT-P-NNN)").complete = "plan"
    p.add_argument("--step", type=int, metavar="I",
                   help="only step I (counted from 1, as `plan show` does)")
    p.add_argument("--attempt", type=int, metavar="A",
                   help="only attempt A of the step(s) (default: every attempt)")
    p.add_argument("--follow", "-f", action="store_true",
                   help="after the logs so far, print what the running step writes, and the "
                        "next steps' logs, until the plan stops executing or Ctrl-C")
    p.set_defaults(run=run_logs)


def run_workers(args, ctx) -> int:
    from modulatio_d.core.errors import UsageError
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops import pool

    vault = ctx.vault(args)
    if args.size is not None:
        from modulatio_d.store.pool import check_size

        try:
            n = check_size(args.size, "the pool size")
        except ValueError as e:
            raise UsageError(str(e)) from None
        path = pool.set_size(vault, n, args.host)
        if args.json:
            ctx.print(json.dumps({"host": args.host or pool.show(vault, utcnow())["host"],
                                  "size": n, "file": path}))
        else:
            ctx.say(f"pool size {n} stored in {path}; the supervisor of that host follows "
                    f"within a second")
        return 0
    seen = pool.show(vault, utcnow())
    if args.json:
        ctx.print(json.dumps(seen, indent=2))
        return 0
    for h in seen["hosts"]:
        ctx.say(f"{h['host']}: " + (f"{h['size']} worker(s)" if h["error"] is None
                                    else f"REFUSED: {h['error']}"))
    if not seen["hosts"]:
        ctx.say(f"{seen['host']}: no size stored (a pool runs `daemon --workers N`'s N)")
    for p in seen["pools"]:
        ctx.say(f"pool {p['pid']} on {p['host']}: {p['size']} wanted ({p['source']}), "
                f"{p['running']} running"
                + (f", {p['draining']} finishing their step" if p["draining"] else ""))
    if seen["error"] is not None:
        return 1
    return 0


def run_kickoff(args, ctx) -> int:
    from modulatio_d.ops import kickoff

    vault = ctx.vault(args)
    if args.dry_run:
        shown = kickoff.dry_run(vault, args.plan, ctx.environ)
        if args.json:
            ctx.print(json.dumps(shown, indent=2))
        else:
            for line in kickoff.dry_run_text(shown):
                ctx.say(line)
        return 0
    if args.json:
        from modulatio_d.core.errors import UsageError
        raise UsageError("--json goes with --dry-run only: a kickoff streams its steps' output")
    def tell(line: str) -> None:
        print(f"modulatio: kickoff: {line}", file=ctx.err, flush=True)

    return kickoff.run(vault, args.plan, ctx.environ, ctx.out, tell)


def run_events(args, ctx) -> int:
    from modulatio_d.core.errors import UsageError
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops import events_view

    if args.last is not None and args.last < 0:
        raise UsageError("--last must be 0 or more")
    vault = ctx.vault(args)
    since = None
    if args.since is not None:
        try:
            since = events_view.parse_since(args.since, utcnow())
        except ValueError as e:
            raise UsageError(str(e)) from None
    wanted = events_view.Filter(tuple(args.type), args.plan, args.project)
    show = (lambda e, raw: ctx.print(raw)) if args.json else \
        (lambda e, raw: ctx.say(events_view.one_line(e)))
    last = args.last if args.last is not None else (None if since else 20)
    log = events_view.Events(vault.events_path)
    try:
        for event, raw in log.history(wanted, since, last):
            show(event, raw)
        ctx.out.flush()
        if args.follow:
            for event, raw in log.follow(wanted):
                show(event, raw)
                ctx.out.flush()
    except KeyboardInterrupt:
        return 0  # the way out of --follow
    finally:
        log.close()
    return 0


def run_logs(args, ctx) -> int:
    from modulatio_d.core.errors import UsageError
    from modulatio_d.ops import logs

    if args.step is not None and args.step < 1:
        raise UsageError("--step counts from 1")
    if args.attempt is not None and args.attempt < 1:
        raise UsageError("--attempt counts from 1")
    vault = ctx.vault(args)
    index = args.step - 1 if args.step is not None else None
    try:
        shown = logs.show(vault, args.plan, index, args.attempt, ctx.out, follow=args.follow)
    except KeyboardInterrupt:
        return 0  # the way out of --follow
    if not shown and not args.follow:
        ctx.note(f"{args.plan} has no step output yet"
                 + (f" for step {args.step}" if args.step else ""))
    return 0

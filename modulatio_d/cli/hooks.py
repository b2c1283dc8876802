"""`modulatio hooks list|test|replay|dead-letters`: the hooks of .modulatio/config.yaml."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    group = sub.add_parser("hooks", help="list, test and replay hooks (projectors of "
                                         "events.jsonl; docs/hooks.md)")
    hsub = group.add_subparsers(dest="hooks_command", metavar="ACTION", required=True)

    p = hsub.add_parser("list", parents=[parent],
                        help="each hook: what it runs, where its delivery stands, who delivers "
                             "it, its dead letters; refused hooks with why")
    p.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    p.set_defaults(run=run_list)

    p = hsub.add_parser("test", parents=[parent],
                        help="deliver a sample event (hook_test) to a hook once, now; exit 0 "
                             "when it was accepted, 1 when not")
    p.add_argument("name", help="the hook's name in .modulatio/config.yaml")
    p.add_argument("--json", action="store_true", help="the sample event and the outcome")
    p.set_defaults(run=run_test)

    p = hsub.add_parser("replay", parents=[parent],
                        help="deliver again from an event on (that event included)")
    p.add_argument("name", help="the hook's name in .modulatio/config.yaml")
    p.add_argument("--from", dest="from_id", required=True, metavar="ID",
                   help="the event id to start from (see `hooks dead-letters` or "
                        "events.jsonl)")
    p.set_defaults(run=run_replay)

    p = hsub.add_parser("dead-letters", parents=[parent],
                        help="the events a hook gave up on, oldest first")
    p.add_argument("name", help="the hook's name in .modulatio/config.yaml")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.set_defaults(run=run_dead_letters)


def run_list(args, ctx) -> int:
    from modulatio_d.ops import hooks

    rows = hooks.rows(ctx.vault(args), ctx.environ)
    if args.json:
        ctx.print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        ctx.say("no hooks declared (hooks: in .modulatio/config.yaml; see docs/hooks.md)")
    for r in rows:
        if not r["valid"]:
            ctx.say(f"{r['name']:<16} REFUSED  {r['error']}")
            continue
        cur = r["cursor"] or {}
        where = (f"after {cur.get('id') or '-'} ({cur.get('segment')}:{cur.get('offset')})"
                 if cur else "not started")
        if cur.get("failures"):
            where += (f"; {cur['failures']} failed attempt(s), next at {cur.get('retry_at')}: "
                      f"{cur.get('last_error')}")
        who = r["deliverer"]
        by = f"{who.get('host')}:{who.get('pid')}" if who else "no deliverer"
        ctx.say(f"{r['name']:<16} {','.join(r['events']):<28} {r['action']}")
        ctx.say(f"{'':<16} {where}; {by}; {r['dead_letters']} dead letter(s)"
                + ("; replay pending" if r["replay_pending"] else ""))
        for problem in (r["problem"], r["cursor_error"]):
            if problem:
                ctx.say(f"{'':<16} PROBLEM: {problem}")
    return 0


def run_test(args, ctx) -> int:
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops import hooks

    result = hooks.test(ctx.vault(args), args.name, ctx.environ, utcnow())
    if args.json:
        ctx.print(json.dumps(result, indent=2))
    elif result["error"] is None:
        ctx.print(f"{args.name}: delivered sample event {result['event']['id']} (hook_test)")
    else:
        ctx.print(f"{args.name}: not delivered: {result['error']}")
    return 0 if result["error"] is None else 1


def run_replay(args, ctx) -> int:
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops import hooks

    done = hooks.replay(ctx.vault(args), args.name, args.from_id, utcnow())
    if done["applied"]:
        ctx.print(f"{args.name}: cursor set before {args.from_id}; the next deliverer starts "
                  f"there")
    else:
        ctx.print(f"{args.name}: replay from {args.from_id} asked of the running deliverer "
                  f"(applied before its next batch)")
    return 0


def run_dead_letters(args, ctx) -> int:
    from modulatio_d.ops import hooks

    letters = hooks.dead_letters(ctx.vault(args), args.name)
    for d in letters:
        if args.json:
            ctx.print(json.dumps(d, default=str))
            continue
        event = d.get("event") or {}
        ctx.say(f"{d.get('at')}  {event.get('id')}  {event.get('event')}  "
                f"{event.get('plan') or '-'}  after {d.get('attempts')} attempts: "
                f"{d.get('error')}")
    if not letters and not args.json:
        ctx.say(f"{args.name}: no dead letters")
    return 0

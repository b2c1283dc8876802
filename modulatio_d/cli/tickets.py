"""`modulatio ticket list|approve|decline`."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    t = sub.add_parser("ticket", help="decisions a person must take about paused plans")
    tsub = t.add_subparsers(dest="ticket_command", metavar="ACTION", required=True)
    p = tsub.add_parser("list", parents=[parent], help="list tickets (open ones by default)")
    p.add_argument("--all", action="store_true", help="closed ones too")
    p.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    p.set_defaults(run=run_list)
    for decision in ("approve", "decline"):
        p = tsub.add_parser(decision, parents=[parent],
                            help="approve: the plan resumes where it paused" if decision ==
                            "approve" else "decline: the plan is aborted")
        p.add_argument("id", help="the ticket id").complete = "ticket"
        p.set_defaults(run=run_decide, decision=decision)


def run_list(args, ctx) -> int:
    from modulatio_d.ops.tickets import ticket_rows

    rows = ticket_rows(ctx.vault(args), closed_too=args.all)
    if args.json:
        ctx.print(json.dumps(rows, indent=2))
    for r in [] if args.json else rows:
        if "error" in r:
            ctx.say(f"{r['id']:<28} INVALID  {r['error']}")
        else:
            ctx.say(f"{r['id']:<28} {r['severity']:<8} {r['decision']:<8} {r['plan']:<20} "
                      f"{r['reason']}")
    return 0


def run_decide(args, ctx) -> int:
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops.tickets import decide
    from modulatio_d.store.events import EventLog
    from modulatio_d.store.tickets import TicketDecision

    vault = ctx.vault(args)
    ticket = decide(vault, args.id, TicketDecision(args.decision), utcnow(),
                    EventLog(vault.events_path))
    ctx.print(f"{ticket.id}: {args.decision}d; plan {ticket.plan} "
              f"{'resumes' if args.decision == 'approve' else 'is aborted'}")
    return 0

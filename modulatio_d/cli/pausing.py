"""`modulatio pause|resume|drain`: the operator's hold on the vault or a project."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("pause", parents=[parent],
                       help="stop admitting work: no daemon claims a plan or fires a cron "
                            "kickoff; running plans stop at their next step boundary")
    p.add_argument("--project", metavar="P", help="only this project (default: the whole "
                   "vault)").complete = "project"
    p.add_argument("--reason", metavar="TEXT", default="", help="why, shown in status")
    p.add_argument("--now", action="store_true",
                   help="also stop the running steps now, as SIGTERM would (they run again "
                        "on resume)")
    p.set_defaults(run=run_pause)

    p = sub.add_parser("resume", parents=[parent],
                       help="end a pause made with `modulatio pause`: daemons claim again and "
                            "fire what came due (by each cron entry's catch-up policy)")
    p.add_argument("--project", metavar="P", help="only this project's pause (default: the "
                   "vault's)").complete = "project"
    p.set_defaults(run=run_resume)

    p = sub.add_parser("drain", parents=[parent],
                       help="pause, and with --wait return when no step runs (for upgrades "
                            "and reboots)")
    p.add_argument("--wait", action="store_true",
                   help="wait until no plan of the scope runs (exit 1 at --timeout)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="with --wait: give up after S seconds (default: wait for ever)")
    p.add_argument("--project", metavar="P", help="only this project").complete = "project"
    p.add_argument("--reason", metavar="TEXT", default="drain", help="why, shown in status "
                   "(default: drain)")
    p.add_argument("--json", action="store_true", help="what still runs, as JSON")
    p.set_defaults(run=run_drain)


def _scope(args, ctx, vault) -> str | None:
    from modulatio_d.cli.lookup import project_code

    return project_code(vault, args.project, ctx) if args.project else None


def _pause(args, ctx, now: bool) -> tuple:
    from modulatio_d.core.errors import UsageError
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops.pausing import pause_scope

    if "\0" in args.reason or len(args.reason) > 1000:
        raise UsageError("--reason must be a text of up to 1000 characters")
    vault = ctx.vault(args)
    project = _scope(args, ctx, vault)
    pause_scope(vault, project, args.reason, now, utcnow(), ctx.environ)
    return vault, project


def run_pause(args, ctx) -> int:
    _, project = _pause(args, ctx, args.now)
    what = f"project {project}" if project else "the vault"
    ctx.say(f"paused {what}: no new claim or cron kickoff; running plans "
            + ("stop their steps now (they run again on resume)" if args.now
               else "stop at their next step boundary"))
    return 0


def run_resume(args, ctx) -> int:
    from modulatio_d.ops.pausing import resume_scope

    vault = ctx.vault(args)
    project = _scope(args, ctx, vault)
    state, was = resume_scope(vault, project)
    what = f"project {project}" if project else "the vault"
    ctx.say(f"resumed {what}" if was else f"{what} was not paused")
    if state.vault is not None and project is not None:
        ctx.note("the whole vault is still paused: `modulatio resume` ends that")
    return 0


def run_drain(args, ctx) -> int:
    from modulatio_d.core.errors import UsageError
    from modulatio_d.ops.pausing import running, wait_drained

    if args.timeout is not None and (args.timeout < 0 or args.timeout != args.timeout):
        raise UsageError("--timeout must be 0 or more seconds")
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout goes with --wait")
    vault, project = _pause(args, ctx, False)
    busy = wait_drained(vault, project, args.timeout) if args.wait else running(vault, project)
    if args.json:
        ctx.print(json.dumps({"drained": not busy,
                              "running": [{"project": p, "plan": i} for p, i in busy]}))
    elif not busy:
        ctx.say("drained: no step runs" if args.wait else "paused; no step runs now")
    else:
        names = ", ".join(f"{p}/{i}" for p, i in busy)
        ctx.say(("still running after the timeout: " if args.wait else
                 "paused; still finishing their current step: ") + names)
    return 1 if busy and args.wait else 0

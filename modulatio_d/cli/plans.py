"""`modulatio plan ...` and `modulatio project resume`."""

from __future__ import annotations

import argparse

ACTIONS = ("approve", "pause", "resume", "abort", "retry", "unblock")
ACTION_HELP = {
    "approve": "a draft or paused plan becomes approved: the next free daemon runs it",
    "pause": "an approved or executing plan stops at the end of its current step",
    "resume": "a paused plan becomes approved and resumes where it stopped",
    "abort": "any plan not final is aborted; a running step is killed",
    "retry": "a failed or aborted plan becomes approved again, at the step where it stopped",
    "unblock": "a plan blocked by a failed or aborted dependency drops those from its after: "
               "list and runs once the others completed",
}
STATUSES = ("draft", "approved", "executing", "paused", "completed", "failed", "aborted",
            "invalid")


class _Step(argparse.Action):
    """--step and --objective share one ordered list of (kind, value)."""

    def __call__(self, parser, namespace, value, option_string=None):
        kind = "run" if option_string == "--step" else "objective"
        namespace.steps = [*(namespace.steps or []), (kind, value)]


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    plan = sub.add_parser("plan", help="create, list, show and change plans")
    psub = plan.add_subparsers(dest="plan_command", metavar="ACTION", required=True)

    p = psub.add_parser("new", parents=[parent], help="create a plan; prints its id")
    p.add_argument("project", help="project code, e.g. SALES (an existing folder that "
                   "differs only in case is used; a new code makes a new project)"
                   ).complete = "project"
    p.add_argument("title", help="the plan's title")
    p.add_argument("--step", metavar="CMD", action=_Step, dest="steps", default=[],
                   help="a shell step (repeatable; kept in order with --objective)")
    p.add_argument("--objective", metavar="TEXT", action=_Step, dest="steps",
                   help="a text-only sub-objective for the default agent (repeatable)")
    p.add_argument("--approve", action="store_true", help="create it approved, ready to run")
    p.add_argument("--at", metavar="TIME", help="not_before: no daemon starts it before this "
                   "ISO 8601 time (e.g. 2026-12-24T06:00:00Z)")
    p.add_argument("--expires", metavar="TIME", help="expires_at: not started by this time, "
                   "it fails with reason expired")
    p.add_argument("--after", metavar="ID", action="append", default=[],
                   help="a plan of the same project that must complete first (repeatable)")
    p.set_defaults(run=run_new)

    p = psub.add_parser("list", parents=[parent], help="list plans")
    p.add_argument("--project", metavar="P", help="only this project").complete = "project"
    p.add_argument("--status", metavar="S", choices=STATUSES,
                   help="only plans with this status: " + ", ".join(STATUSES))
    p.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    p.set_defaults(run=run_list)

    p = psub.add_parser("show", parents=[parent], help="one plan: status, progress, log, usage")
    p.add_argument("id", help="the plan id, e.g. SALES-P-001").complete = "plan"
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    p.set_defaults(run=run_show)

    for action in ACTIONS:
        p = psub.add_parser(action, parents=[parent], help=ACTION_HELP[action])
        p.add_argument("id", help="the plan id").complete = \
            "plan" if action == "unblock" else f"plan:{action}"
        p.set_defaults(run=run_action, action=action)

    p = psub.add_parser("rerun", parents=[parent],
                        help="a new run of a completed, failed or aborted plan; the old "
                             "run's log is kept in <plan>.runs/run-N/")
    p.add_argument("id", help="the plan id").complete = "plan:rerun"
    p.add_argument("--from", dest="from_step", metavar="STEP", type=int, default=1,
                   help="the step to start at, counted from 1 (default: 1)")
    p.set_defaults(run=run_rerun)

    p = psub.add_parser("restore", parents=[parent],
                        help="trust a plan file put back from git or a backup, instead of "
                             "the daemon taking it for a stale save")
    p.add_argument("id", help="the plan id").complete = "plan"
    p.set_defaults(run=run_restore)

    project = sub.add_parser("project", help="recover the plans of a project")
    prsub = project.add_subparsers(dest="project_command", metavar="ACTION", required=True)
    p = prsub.add_parser("resume", parents=[parent],
                         help="set a plan left executing by a dead daemon back to approved")
    p.add_argument("id", help="the plan id").complete = "plan:recover"
    p.set_defaults(run=run_action, action="recover")


def run_new(args, ctx) -> int:
    from modulatio_d.cli.lookup import project_code
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops.plans import new_plan
    from modulatio_d.store.events import EventLog

    vault = ctx.vault(args)
    project = project_code(vault, args.project, ctx, new_ok=True)
    sched = {"not_before": _time_arg("--at", args.at), "after": args.after or None,
             "expires_at": _time_arg("--expires", args.expires)}
    plan_id, path = new_plan(vault, project, args.title, args.steps, args.approve, utcnow(),
                             schedule={k: v for k, v in sched.items() if v})
    EventLog(vault.events_path)("plan_created", project=project, plan=plan_id,
                                status="approved" if args.approve else "draft")
    ctx.print(plan_id)
    return 0


def _time_arg(flag: str, value: str | None):
    from modulatio_d.core.errors import UsageError
    from modulatio_d.core.times import parse_time

    if value is None:
        return None
    t = parse_time(value)
    if t is None:
        raise UsageError(f"{flag} {value!r} is not a time: write ISO 8601, e.g. "
                         "2026-12-24T06:00:00Z")
    return t


def run_action(args, ctx) -> int:
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops.dependencies import check_approve, unblock
    from modulatio_d.store.events import EventLog
    from modulatio_d.store.plan_file import change_status

    vault = ctx.vault(args)
    if args.action == "unblock":
        plan, dropped = unblock(vault, args.id, EventLog(vault.events_path))
        ctx.print(f"{plan.id}: no longer waits for {', '.join(dropped)}"
                  + (f"; still after {', '.join(plan.schedule.after)}"
                     if plan.schedule.after else ""))
        return 0
    if args.action == "approve":
        check_approve(vault, args.id)
    plan = change_status(vault, args.id, args.action, utcnow(), EventLog(vault.events_path))
    ctx.print(f"{plan.id}: {plan.status.value} ({plan.done}/{plan.total} done)")
    return 0


def run_rerun(args, ctx) -> int:
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops.reruns import rerun
    from modulatio_d.store.events import EventLog

    vault = ctx.vault(args)
    plan = rerun(vault, args.id, args.from_step, utcnow(), EventLog(vault.events_path))
    ctx.print(f"{plan.id}: {plan.status.value} (run {len(plan.runs) + 1}, from step "
              f"{plan.current_index + 1}/{plan.total})")
    return 0


def run_restore(args, ctx) -> int:
    from modulatio_d.ops.reruns import restore
    from modulatio_d.store.events import EventLog

    vault = ctx.vault(args)
    plan = restore(vault, args.id, EventLog(vault.events_path))
    ctx.print(f"{plan.id}: {plan.status.value} ({plan.done}/{plan.total} done), trusted as "
              f"it stands (rev {plan.rev})")
    return 0


def run_list(args, ctx) -> int:
    from modulatio_d.cli.lookup import project_code
    from modulatio_d.ops.render import list_json, list_plans

    vault = ctx.vault(args)
    project = project_code(vault, args.project, ctx) if args.project else None
    from modulatio_d.cli.progress import reporter

    tick, done = reporter(ctx.err, "plan list")
    try:
        if args.json:  # the rows' JSON texts, kept beside the rows (ops/render.py)
            text = list_json(vault, project=project, status=args.status, tick=tick)
        else:
            rows = list_plans(vault, project=project, status=args.status, tick=tick)
    finally:
        done()
    if args.json:
        ctx.print(text)
        return 0
    from modulatio_d.core.controls import neutralise

    if rows:  # one write, not two a row (stdout is unbuffered under PYTHONUNBUFFERED)
        lines = [f"{r['id']:<24} {r['status']:<10} {r['done']}/{r['total']:<4} "
                 f"p{r['priority']:<4} {r['title']}" for r in rows]
        # Each line as ctx.say writes it; one scan of them all tells whether any needs it.
        flat = "".join(lines)
        safe = neutralise(flat) == flat
        ctx.print("\n".join(lines if safe else map(neutralise, lines)))
    return 0


def run_show(args, ctx) -> int:
    from modulatio_d.ops.render import show_plan

    info = show_plan(ctx.vault(args), args.id)
    if args.json:
        import json

        ctx.print(json.dumps(info, indent=2))
        return 0
    ctx.say(f"{info['id']}  {info['title']}")
    ctx.say(f"status:   {info['status']}")
    ctx.say(f"progress: {info['progress']}")
    if info.get("last_result"):
        ctx.say(f"last:     {info['last_result']}")
    shape = info.get("modulatio")
    if shape:  # a Modulatio-shaped file: its own words and counters
        ctx.say(f"file:     status {shape['file_status']}, tokens_used {shape['tokens_used']}, "
                f"cost_usd_used {shape['cost_usd_used']}")
        if shape["body_error"]:
            ctx.say(f"body:     {shape['body_error']}")
    if info.get("last_error"):
        ctx.say(f"error:    {info['last_error']}")
    if info.get("waiting"):
        ctx.say(f"waiting:  {info['waiting']}")
    if info.get("after"):
        ctx.say("after:    " + ", ".join(f"{d} ({s})" for d, s in info["after"].items()))
    u = info["usage"]
    ctx.say(f"usage:    {u['calls']} calls, {u['input_tokens'] + u['output_tokens']} tokens, "
                f"${u['cost_usd']:.4f}")
    for i, (step, mark) in enumerate(zip(info["sub_objectives"], info["marks"], strict=True)):
        ctx.say(f"  [{mark}] {i + 1}: {step}")  # steps counted from 1, as people count
    for r in info["runs"]:
        ctx.say(f"  run {r.get('run')}: {r.get('status')} {r.get('done')}/{r.get('total')}, "
                f"ended {r.get('ended_at')}; its logs in {r.get('history')}/")
    if info.get("reflection_log_problem"):
        ctx.say(f"note: {info['reflection_log_problem']}")
    if info["reflection_log"]:
        ctx.say(f"logs in {info['runs_dir']}/:")
    for e in info["reflection_log"]:
        if "attempt" not in e and "decision" not in e:  # an entry Modulatio wrote, its shape
            from modulatio_d.core.modulatio_shape import describe_entry
            ctx.say(f"  log: {describe_entry(e)}")
            continue
        index = e.get("index")
        ctx.say(f"  step {index + 1 if isinstance(index, int) else '?'} attempt "
                f"{e.get('attempt')} {e.get('outcome')} -> {e.get('decision')} "
                f"({e.get('duration_s')}s) {e.get('log', '')}  {e.get('summary', '')}".rstrip())
    return 0

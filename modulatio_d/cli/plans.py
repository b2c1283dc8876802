"""`modulatio plan ...` and `modulatio project resume`."""

from __future__ import annotations

import argparse
import json

ACTIONS = ("approve", "pause", "resume", "abort", "retry")
ACTION_HELP = {
    "approve": "a draft or paused plan becomes approved: the next free daemon runs it",
    "pause": "an approved or executing plan stops at the end of its current step",
    "resume": "a paused plan becomes approved and resumes where it stopped",
    "abort": "any plan not final is aborted; a running step is killed",
    "retry": "a failed or aborted plan becomes approved again, at the step where it stopped",
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
        p.add_argument("id", help="the plan id").complete = f"plan:{action}"
        p.set_defaults(run=run_action, action=action)

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
    plan_id, path = new_plan(vault, project, args.title, args.steps, args.approve, utcnow())
    EventLog(vault.events_path)("plan_created", project=project, plan=plan_id,
                                status="approved" if args.approve else "draft")
    ctx.print(plan_id)
    return 0


def run_action(args, ctx) -> int:
    from modulatio_d.core.times import utcnow
    from modulatio_d.store.events import EventLog
    from modulatio_d.store.plan_file import change_status

    vault = ctx.vault(args)
    plan = change_status(vault, args.id, args.action, utcnow(), EventLog(vault.events_path))
    ctx.print(f"{plan.id}: {plan.status.value} at step {plan.done}/{plan.total}")
    return 0


def run_list(args, ctx) -> int:
    from modulatio_d.cli.lookup import project_code
    from modulatio_d.ops.render import list_plans

    vault = ctx.vault(args)
    project = project_code(vault, args.project, ctx) if args.project else None
    rows = list_plans(vault, project=project, status=args.status)
    if args.json:
        ctx.print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        ctx.say(f"{r['id']:<24} {r['status']:<10} {r['done']}/{r['total']:<4} "
                f"p{r['priority']:<4} {r['title']}")
    return 0


def run_show(args, ctx) -> int:
    from modulatio_d.ops.render import show_plan

    info = show_plan(ctx.vault(args), args.id)
    if args.json:
        ctx.print(json.dumps(info, indent=2))
        return 0
    ctx.say(f"{info['id']}  {info['title']}")
    ctx.say(f"status:   {info['status']}   progress: {info['done']}/{info['total']}")
    shape = info.get("modulatio")
    if shape:  # a Modulatio-shaped file: its own words and counters
        ctx.say(f"file:     status {shape['file_status']}, tokens_used {shape['tokens_used']}, "
                f"cost_usd_used {shape['cost_usd_used']}")
        if shape["body_error"]:
            ctx.say(f"body:     {shape['body_error']}")
    if info.get("last_error"):
        ctx.say(f"error:    {info['last_error']}")
    u = info["usage"]
    ctx.say(f"usage:    {u['calls']} calls, {u['input_tokens'] + u['output_tokens']} tokens, "
                f"${u['cost_usd']:.4f}")
    for i, step in enumerate(info["sub_objectives"]):
        mark = "x" if i < info["done"] else ">" if i == info["done"] else " "
        ctx.say(f"  [{mark}] {i}: {step}")
    for e in info["reflection_log"]:
        if "attempt" not in e and "decision" not in e:  # an entry Modulatio wrote, its shape
            from modulatio_d.core.modulatio_shape import describe_entry
            ctx.say(f"  log: {describe_entry(e)}")
            continue
        ctx.say(f"  log: step {e.get('index')} attempt {e.get('attempt')} {e.get('outcome')} "
                f"-> {e.get('decision')} ({e.get('duration_s')}s) {e.get('summary', '')}")
    return 0

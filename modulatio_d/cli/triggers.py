"""`modulatio trigger add|list|remove|enable|disable|fire`: trigger entries in the vault."""

from __future__ import annotations

import argparse
import json

from modulatio_d.cli import entry_cmds


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    group = sub.add_parser("trigger", help="add, list, remove, enable, disable and fire "
                                           "triggers (file watches and webhooks)")
    tsub = group.add_subparsers(dest="trigger_command", metavar="ACTION", required=True)

    p = tsub.add_parser("add", parents=[parent], help="add a trigger; prints its id",
                        description="Add a trigger: a kickoff plan is created for each batch "
                                    "of changed files (--watch) or each delivery (--webhook). "
                                    "Example: modulatio trigger add SALES \"Import the "
                                    "drop\" --watch 'inbox/*.csv' --debounce 2s")
    p.add_argument("project", help="project code, e.g. SALES").complete = "project"
    p.add_argument("objective", help="what each kickoff is for; its title")
    p.add_argument("--watch", metavar="PATH", action="append", default=[],
                   help="a path or glob to watch, relative to the vault or absolute "
                        "(repeatable)")
    p.add_argument("--webhook", action="store_true",
                   help="a webhook trigger: kickoffs come from deliveries (trigger fire)")
    p.add_argument("--debounce", metavar="DURATION",
                   help="with --watch: fire once no change came for this long (default 1s; "
                        "500ms, 2s, ...)")
    p.add_argument("--capacity", type=int, metavar="N",
                   help="with --watch: the most changed paths one batch holds (default 1024)")
    p.add_argument("--overflow", choices=("drop-oldest", "drop-newest"),
                   help="with --watch: which path a full batch gives up (default drop-oldest)")
    p.add_argument("--step", metavar="CMD", action="append", dest="steps", default=[],
                   help="a shell command for each kickoff (repeatable, in order)")
    p.add_argument("--template", metavar="PLAN_ID",
                   help="copy the sub-objectives of this plan into each kickoff"
                   ).complete = "plan"
    p.add_argument("--draft", action="store_true",
                   help="create kickoffs as drafts that a person approves")
    p.set_defaults(run=run_add)

    p = tsub.add_parser("list", parents=[parent], help="list triggers with their state")
    p.add_argument("--project", metavar="P", help="only this project").complete = "project"
    p.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    p.set_defaults(run=run_list)

    entry_cmds.register(tsub, parent, "trigger")  # remove, enable, disable

    p = tsub.add_parser("fire", parents=[parent],
                        help="hand a webhook trigger one delivery: one kickoff per delivery id")
    p.add_argument("id", help="the webhook trigger id")
    p.add_argument("--payload", metavar="FILE", required=True,
                   help="the delivery's payload (text, at most 64 KiB; - for stdin)")
    p.add_argument("--delivery-id", metavar="X",
                   help="the delivery's id (default: the payload's sha256); the same id "
                        "twice makes one kickoff")
    p.set_defaults(run=run_fire)


def run_add(args, ctx) -> int:
    from modulatio_d.cli.lookup import project_code
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops import triggers
    from modulatio_d.store.events import EventLog

    vault = ctx.vault(args)
    project = project_code(vault, args.project, ctx, new_ok=True)
    t = triggers.add(vault, project, args.objective, utcnow(), args.watch, args.webhook,
                     args.debounce, args.capacity, args.overflow, args.steps, args.template,
                     approve=not args.draft)
    EventLog(vault.events_path)("trigger_added", project=t.project, trigger=t.id, kind=t.kind)
    ctx.print(t.id)
    return 0


def run_list(args, ctx) -> int:
    from modulatio_d.cli.lookup import project_code
    from modulatio_d.ops import triggers

    vault = ctx.vault(args)
    project = project_code(vault, args.project, ctx) if args.project else None
    rows = triggers.rows(vault, project)
    if args.json:
        ctx.print(json.dumps([{k: v for k, v in r.items() if k != "_error"} for r in rows],
                             indent=2))
        return 0
    for r in rows:
        ctx.say(describe(r))
    return 0


def describe(r: dict) -> str:
    """One line about a trigger row of `trigger list`."""
    from modulatio_d.ops.triggers import summary

    if not r["valid"]:
        return f"{r['id']:<16} INVALID  {r['error']}"
    state = "enabled" if r["enabled"] else "disabled"
    return f"{r['id']:<16} {state:<8} {summary(r)}  {r['objective']}"


def run_fire(args, ctx) -> int:
    import sys

    from modulatio_d.core.errors import UsageError
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops import triggers
    from modulatio_d.store.events import EventLog

    vault = ctx.vault(args)
    try:
        if args.payload == "-":
            payload = sys.stdin.buffer.read(triggers.store.MAX_PAYLOAD + 1)
        else:
            with open(args.payload, "rb") as f:
                payload = f.read(triggers.store.MAX_PAYLOAD + 1)
    except OSError as e:
        raise UsageError(f"--payload {args.payload}: {e.strerror}") from None
    kickoff, made = triggers.fire_webhook(vault, args.id, payload, args.delivery_id, utcnow(),
                                          EventLog(vault.events_path))
    ctx.print(kickoff if made else f"{kickoff} (this delivery was fired already)")
    return 0

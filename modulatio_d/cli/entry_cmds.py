"""`remove`, `enable` and `disable` of `modulatio cron` and `modulatio trigger`.

Both are entries in a project's folder with an id and an `enabled` line, and the plans
they kicked off stay when they go; the ops module of each kind has `remove(vault, id)`
(the path removed) and `set_enabled(vault, id, enabled)` ((the entry, whether the file
changed)). Each change is told in events.jsonl as `<kind>_removed`, `<kind>_enabled`,
`<kind>_disabled`.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str  # the event prefix and the events' key: cron, trigger
    noun: str  # in help texts
    example: str
    ops: str  # the module of its use-cases
    complete: str | None  # the shell completion of its ids


KINDS = {k.name: k for k in (
    Kind("cron", "cron entry", "SALES-C-001", "modulatio_d.ops.cron", "cron"),
    Kind("trigger", "trigger", "SALES-T-001", "modulatio_d.ops.triggers", None))}


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser,
             kind: str) -> None:
    k = KINDS[kind]
    p = sub.add_parser("remove", parents=[parent],
                       help=f"delete a {k.noun} (its kickoff plans stay)")
    p.add_argument("id", help=f"the {k.noun} id, e.g. {k.example}").complete = k.complete
    p.set_defaults(run=run_remove, entry_kind=kind)
    for action in ("enable", "disable"):
        p = sub.add_parser(action, parents=[parent], help=f"{action} a {k.noun}")
        p.add_argument("id", help=f"the {k.noun} id").complete = k.complete
        p.set_defaults(run=run_enable, entry_kind=kind, enabled=action == "enable")


def run_remove(args, ctx) -> int:
    from modulatio_d.store.events import EventLog

    k = KINDS[args.entry_kind]
    vault = ctx.vault(args)
    path = importlib.import_module(k.ops).remove(vault, args.id)
    EventLog(vault.events_path)(f"{k.name}_removed", project=vault.project_of(path),
                                **{k.name: args.id})
    ctx.print(f"removed {args.id} (its kickoff plans stay)")
    return 0


def run_enable(args, ctx) -> int:
    from modulatio_d.store.events import EventLog

    k = KINDS[args.entry_kind]
    vault = ctx.vault(args)
    entry, changed = importlib.import_module(k.ops).set_enabled(vault, args.id, args.enabled)
    state = "enabled" if entry.enabled else "disabled"
    if changed:
        EventLog(vault.events_path)(f"{k.name}_{state}", project=entry.project,
                                    **{k.name: entry.id})
    ctx.print(f"{entry.id}: {state}" + ("" if changed else " (already)"))
    return 0

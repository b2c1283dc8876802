"""What the plan commands do, as plain functions of a vault and a time.

A status change takes the plan's lock when it is free and writes as the lock
holder (rev stamp and record, stale saves repaired). When a daemon holds the
lock, it writes the file the way a person's editor would, and the daemon
honours it: pause lets the running step finish, abort kills it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from modulatio_d.core import markdown, names
from modulatio_d.core.errors import LockBusy, UsageError
from modulatio_d.core.plan import Plan, PlanStatus, transition
from modulatio_d.store import atomic
from modulatio_d.store.events import EventLog
from modulatio_d.store.lock import FileLock, holder, lock_path
from modulatio_d.store.plan_file import HeldPlan, write_as_person
from modulatio_d.store.vault import Vault, next_number


def next_plan_number(vault: Vault, project: str) -> int:
    """One more than the highest number a plan of the project ever had.

    The daemon's records count too, so a deleted plan's id is never reused
    with its old record.
    """
    return next_number(f"{project}-P-",
                       (vault.plans_dir(project), vault.records_dir(project)))


def new_plan(vault: Vault, project: str, title: str, steps: list[tuple[str, str]],
             approve: bool, now: datetime) -> tuple[str, Path]:
    """Create `<PROJECT>/plans/<PROJECT>-P-<NNN>.md` with the next free number.

    `steps` are ("run", command) or ("objective", text) in order; with none the
    title is the one text objective. Created with O_EXCL: two at once never collide.
    """
    names.check("project code", project)
    if not title.strip():
        raise UsageError("the plan needs a title")
    subs = [{"run": v} if kind == "run" else v for kind, v in steps] or [title.strip()]
    folder = vault.plans_dir(project)
    folder.mkdir(parents=True, exist_ok=True)
    number = next_plan_number(vault, project)
    while True:
        plan_id = f"{project}-P-{number:03d}"
        keys: dict[str, object] = {"id": plan_id, "title": title.strip(),
                                   "status": "approved" if approve else "draft",
                                   "priority": 50, "created_at": now}
        if approve:
            keys["approved_at"] = now
        keys.update({"sub_objectives": subs, "current_index": 0, "reflection_log": []})
        text = markdown.set_keys("---\n---\n", keys) + "\n"
        path = folder / f"{plan_id}.md"
        try:
            atomic.write_new(path, text.encode())
            return plan_id, path
        except FileExistsError:
            number += 1


def change_status(vault: Vault, plan_id: str, action: str, now: datetime,
                  log: EventLog) -> Plan:
    """Apply `action` (a key of plan.TRANSITIONS) to a plan."""
    project, path = vault.find("plans", plan_id)
    lock = FileLock(lock_path(path))
    if lock.try_acquire():
        with lock:
            held = HeldPlan(vault, path, log)
            before = held.plan.status
            changes = _changes(held.plan, action, now)
            plan = held.update(changes)
    else:
        if action == "recover":
            raise LockBusy(lock_path(path), _describe(holder(lock_path(path))))
        was, plan = write_as_person(vault, path, lambda p: _changes(p, action, now))
        before = was.status
    log("status_changed", project=project, plan=plan_id, by="command", action=action,
        previous=before.value, status=plan.status.value)
    return plan


def _changes(plan: Plan, action: str, now: datetime) -> dict[str, object]:
    status = transition(plan.id, plan.status, action)
    changes: dict[str, object] = {"status": status.value}
    if action == "approve" and plan.status is PlanStatus.DRAFT:
        changes["approved_at"] = now
    return changes


def _describe(info: dict) -> str:
    if not info:
        return ""
    return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('claimed_at')}"

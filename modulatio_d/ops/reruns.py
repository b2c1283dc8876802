"""`plan rerun` and `plan restore`: a new run of a finished plan; a restored file trusted.

Rerun protocol (`modulatio plan rerun ID [--from STEP]`), under the plan's lock
(a finished plan keeps no claim, so it is free; held, the command is refused):
1. The old run's files move into `<plan-id>.runs/run-<N>/`: every file directly
   in `<plan-id>.runs/` (step logs and scratch files; earlier `run-*` folders
   stay), the usage file as `usage.jsonl`, and `reflection_log.json` (the old
   run's entries as JSON, those moved out of the plan file too: they are read
   first, then that file, `<plan-id>.reflection_log.jsonl`, moves there as it
   is). N is one more than the plan's `runs` list holds.
2. The plan is written as its lock holder: `status: approved`, `current_index`
   STEP - 1, `reflection_log: []`; `reflection_archived`, `last_error`, `completed_at`,
   `execution_started_at`, `in_flight` and `claim` removed; one entry added to
   `runs` ({run, status, done, total, started_at, ended_at, token, history}).
   The budget counts the new run only (its usage file and log start empty).
Fencing tokens never go back: a `runs` entry keeps the highest token of its
run (Plan.last_token reads them) and the lock file notes it on release.
A crash between 1 and 2 leaves the files moved and the plan as it was: the
same command again finishes it (the folder run-N is reused, nothing lost).

Restore (`modulatio plan restore ID`): a person put back an older version of
the file (a `git checkout`, a backup). Without this the daemon takes it for a
stale editor save and puts its own newer keys back. Under the plan's lock the
file is read as it stands (no repair), stamped with a `rev` above the record's
and the record is saved from it: from then on the restored file is current.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from modulatio_d.core import digest
from modulatio_d.core.errors import LockBusy, UsageError
from modulatio_d.core.plan import Plan, transition
from modulatio_d.core.times import format_time
from modulatio_d.store import atomic, fs, reflections, usage
from modulatio_d.store.lock import FileLock, holder, lock_path
from modulatio_d.store.plan_file import HeldPlan
from modulatio_d.store.vault import Vault

Notify = Callable[..., None]


def _locked(vault: Vault, plan_id: str) -> tuple[str, Path, FileLock]:
    project, path = vault.find("plans", plan_id)
    lock = FileLock(lock_path(path))
    if not lock.try_acquire():
        info = holder(lock_path(path))
        raise LockBusy(lock_path(path), f"pid {info.get('pid')} on {info.get('host')}"
                       if info else "")
    return project, path, lock


def _release(lock: FileLock, plan: Plan, token: int) -> None:
    try:  # for the next holder's fresh read (daemon/claim.py, step 2)
        lock.note_holder(sync=True, plan=plan.id, rev=plan.rev, by="command", token=token,
                         released=True)
    except OSError:
        pass


def rerun(vault: Vault, plan_id: str, from_step: int, now: datetime, events: Notify) -> Plan:
    """Start a new run of a completed, failed or aborted plan at step `from_step` (from 1)."""
    project, path, lock = _locked(vault, plan_id)
    with lock:
        held = HeldPlan(vault, path, events)
        old = held.plan
        status = transition(old.id, old.status, "rerun")
        if not 1 <= from_step <= old.total:
            raise UsageError(f"plan {old.id} has steps 1 to {old.total}: --from {from_step} "
                             f"is not one of them")
        number = len(old.runs) + 1
        history = path.with_suffix(".runs") / f"run-{number}"
        _keep_history(path, history, old)
        token = old.last_token
        entry = {"run": number, "status": old.status.value, "done": old.done,
                 "total": old.total,
                 "started_at": old.execution_started_at and format_time(old.execution_started_at),
                 "ended_at": _ended(old), "token": token,
                 "history": str(history.relative_to(path.parent))}
        plan = held.update({
            "status": status.value, "current_index": from_step - 1, "reflection_log": [],
            "reflection_archived": None,
            "runs": [*old.runs, {k: v for k, v in entry.items() if v is not None}],
            "last_error": None, "completed_at": None, "execution_started_at": None,
            "in_flight": None, "claim": None, "steps_digest": None,
            **({"approved_digest": digest.of_plan(old.sub_objectives)}
               if old.shape is None else {})})
        _release(lock, plan, token)
    events("plan_rerun", project=project, plan=plan_id, run=number + 1, index=from_step - 1,
           previous=old.status.value, history=str(history.relative_to(vault.root)))
    events("status_changed", project=project, plan=plan_id, by="command", action="rerun",
           previous=old.status.value, status=plan.status.value)
    return plan


def _ended(plan: Plan) -> str | None:
    if plan.completed_at is not None:
        return format_time(plan.completed_at)
    ends = [e.get("ended_at") for e in plan.reflection_log if e.get("ended_at")]
    return str(ends[-1]) if ends else None


def _keep_history(path: Path, history: Path, old: Plan) -> None:
    """Step 1 of the protocol: the old run's files into `history`."""
    runs = path.with_suffix(".runs")
    fs.mkdirs(history)
    for entry in sorted(fs.entries(runs), key=lambda e: e.name):
        if entry.name.startswith("run-") and entry.is_dir():
            continue  # an earlier run's history
        fs.move(runs / entry.name, history / entry.name)
    used = usage.usage_path(path)
    if fs.exists(used):
        fs.move(used, history / "usage.jsonl")
    moved = reflections.path_of(path)
    if not fs.exists(history / "reflection_log.json"):  # a crash after it: the file moved
        data = json.dumps({"plan": old.id, "status": old.status.value,
                           "reflection_log": reflections.whole(old)}, indent=1, default=str)
        atomic.replace(history / "reflection_log.json", data.encode())
    if fs.exists(moved):  # its entries are in reflection_log.json now
        fs.move(moved, history / moved.name)


def restore(vault: Vault, plan_id: str, events: Notify) -> Plan:
    """Trust the plan file as it stands (see the module's docstring)."""
    project, path, lock = _locked(vault, plan_id)
    with lock:
        held = HeldPlan(vault, path, events, repair=False)
        was, record_rev = held.plan, held.record.rev if held.record else None
        plan = held.update({})
        _release(lock, plan, plan.last_token)
    events("plan_restored", project=project, plan=plan_id, file_rev=was.rev,
           record_rev=record_rev, rev=plan.rev, status=plan.status.value)
    return plan

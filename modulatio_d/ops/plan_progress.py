"""The rows `status` shows of a parsed plan: an executing plan with its step, claim and
lock holder, a paused one with its last error (ops/survey.py). Imported only when a
plan is parsed: with the plan reader, not at a warm `status`'s start."""

from __future__ import annotations

from datetime import datetime

from modulatio_d.core import people
from modulatio_d.core.plan import Plan
from modulatio_d.core.times import iso, parse_time
from modulatio_d.store.lock import holder, is_held, lock_path


def progress(plan: Plan, project: str) -> dict:
    index = plan.current_index
    step = plan.sub_objectives[index] if index < plan.total else None
    return {"id": plan.id, "project": project, "title": plan.title, "done": plan.done,
            "total": plan.total, "step_index": index if step else None,
            "step_title": step.title if step else None, "path": str(plan.path),
            "progress": people.progress(plan), "last_result": people.last_result(plan)}


def executing(plan: Plan, project: str, now: datetime) -> dict:
    row = progress(plan, project)
    started = plan.execution_started_at
    flight = plan.in_flight or {}
    step_started = parse_time(flight.get("started_at"))
    lock = lock_path(plan.path)
    held = is_held(lock)
    claim = plan.claim or {}
    row.update(
        started_at=iso(started),
        running_s=round((now - started).total_seconds(), 1) if started else None,
        attempt=flight.get("attempt"),
        step_started_at=iso(step_started),
        step_running_s=round((now - step_started).total_seconds(), 1) if step_started else None,
        claim={"host": claim.get("host"), "pid": claim.get("pid"), "token": claim.get("token")},
        held=held, orphan=not held,
        holder=holder(lock) if held else None,
    )
    return row


def paused(plan: Plan, project: str) -> dict:
    row = progress(plan, project)
    row["last_error"] = plan.last_error
    return row

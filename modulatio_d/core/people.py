"""A plan's progress in a person's terms: the flat `progress` and `last_result` keys.

Pure: computed from a Plan (its status, current_index, in_flight and
reflection_log), never from a clock. Step numbers here, as everywhere a person
reads them, count from 1; `current_index` and the `index` of reflection_log
entries stay 0-based (docs/plan-file.md, "Step numbers").

    progress: "2/5 done · running step 3 “Build the digest” since 14:02 UTC"
    last_result: "step 2 “Summarize” attempt 1: ok (exit 0) in 12s, at 14:02 UTC"

(Titles in typographic quotes, so that the YAML holds no escapes.)

The daemon keeps both current in every write of the plan's lock holder
(store/plan_file.py), so Obsidian's properties view and a plain `cat` show
where a plan is without the CLI.
"""

from __future__ import annotations

from typing import Any

from modulatio_d.core.plan import Plan, PlanStatus
from modulatio_d.core.times import parse_time

_TITLE_MAX = 60


def step_label(plan: Plan, index: int) -> str:
    """`step 3 “Build the digest”` for the 0-based `index` (no title past the end)."""
    if 0 <= index < plan.total:
        return f"step {index + 1} “{_short(plan.sub_objectives[index].title)}”"
    return f"step {index + 1}"


def _short(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= _TITLE_MAX else title[:_TITLE_MAX - 1] + "…"


def _clock(value: object) -> str:
    at = parse_time(value)
    return at.strftime("%H:%M UTC") if at else "?"


def _day(value: object) -> str:
    at = parse_time(value)
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "?"


def progress(plan: Plan) -> str:
    done = f"{plan.done}/{plan.total} done"
    status = plan.status
    flight = plan.in_flight if isinstance(plan.in_flight, dict) else None
    if status is PlanStatus.EXECUTING and flight is not None:
        index = flight.get("index")
        index = index if isinstance(index, int) else plan.current_index
        attempt = flight.get("attempt", 1)
        again = f" (attempt {attempt})" if isinstance(attempt, int) and attempt > 1 else ""
        return (f"{done} · running {step_label(plan, index)}{again} since "
                f"{_clock(flight.get('started_at'))}")
    if status is PlanStatus.COMPLETED:
        return f"{done} · completed {_day(plan.completed_at)}" if plan.completed_at \
            else f"{done} · completed"
    if status in (PlanStatus.PAUSED, PlanStatus.FAILED) and plan.current_index < plan.total:
        return f"{done} · {status.value} at {step_label(plan, plan.current_index)}"
    if status is PlanStatus.APPROVED:
        return f"{done} · waiting for a daemon"
    return f"{done} · {status.value}"


def last_result(plan: Plan) -> str | None:
    """The latest attempt's end, or None before the first."""
    if not plan.reflection_log:
        return None
    e = plan.reflection_log[-1]
    index = e.get("index")
    label = step_label(plan, index) if isinstance(index, int) else "step ?"
    if isinstance(index, int) and index < plan.total \
            and plan.sub_objectives[index].title != e.get("title") and e.get("title"):
        label = f"step {index + 1} “{_short(str(e.get('title')))}”"  # as it ran
    took = e.get("duration_s")
    took_text = f" in {_duration(took)}" if isinstance(took, (int, float)) else ""
    exit_text = f" ({e.get('exit')})" if e.get("exit") not in (None, "") else ""
    attempt = e.get("attempt")
    attempt_text = f" attempt {attempt}" if isinstance(attempt, int) else ""
    ended = parse_time(e.get("ended_at"))
    at_text = f", at {ended.strftime('%H:%M UTC')}" if ended else ""
    return (f"{label}{attempt_text}: {e.get('outcome', '?')}{exit_text}{took_text}"
            f"{at_text}")


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def view(plan: Plan) -> dict[str, Any]:
    """The people's keys `plan` should carry (None: the key is left out)."""
    return {"progress": progress(plan), "last_result": last_result(plan)}


def stale(plan: Plan) -> dict[str, Any]:
    """The people's keys whose value in `plan` differs from what they should be."""
    return {k: v for k, v in view(plan).items() if getattr(plan, k) != v}

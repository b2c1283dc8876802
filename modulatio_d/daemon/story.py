"""The daemon's log tells what happened: one line per outcome, fed by the event sink.

Protocol: the daemon's event sink (store/events.py EventLog) is wrapped in a
`Story`; each `story(event, **fields)` appends the event to events.jsonl and,
when `tell()` maps the event to a level and a one-line text, logs that line on
the logger `modulatio.story` with the record extras `modulatio_event`,
`plan_id`, `project`, `step` (1-based, as people count; events.jsonl keeps the
0-based `index`) and `attempt`, where the event knows them. One call, two
records: the log and events.jsonl cannot drift apart. Events the code already
logs where they happen (claims, refusals, lost locks, start and stop) map to
nothing here, so no line is logged twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

log = logging.getLogger("modulatio.story")

Told = tuple[int, str]


def tell(event: str, f: dict) -> Told | None:
    """The level and text of the log line `event` deserves, or None."""
    teller = _TELLERS.get(event)
    return teller(f) if teller else None


def extras(event: str, f: dict) -> dict[str, object]:
    """The structured fields of the line (JSON log lines carry them)."""
    out: dict[str, object] = {"modulatio_event": event}
    if f.get("plan") is not None:
        out["plan_id"] = f["plan"]
    if f.get("project") is not None:
        out["project"] = f["project"]
    if isinstance(f.get("index"), int):
        out["step"] = f["index"] + 1
    if f.get("attempt") is not None:
        out["attempt"] = f["attempt"]
    return out


class Story:
    """An event sink that also logs the story line of each event (see the module doc)."""

    def __init__(self, sink: Callable[..., None]):
        self.sink = sink

    def __call__(self, event: str, **fields: object) -> None:
        self.sink(event, **fields)
        told = tell(event, fields)
        if told is not None:
            level, text = told
            log.log(level, "%s", text, extra=extras(event, fields))

    def __getattr__(self, name: str):  # path, clock, ...: the wrapped EventLog's
        if name == "sink":  # not set yet (a copy being made): no endless lookup
            raise AttributeError(name)
        return getattr(self.sink, name)


def together(sink: Callable[..., None]) -> AbstractContextManager[None]:
    """`sink.together()` (store/events.py: the events told inside written in one append)
    where the sink has it; any other sink (a test's list) takes them one at a time."""
    held = getattr(sink, "together", None)
    return held() if callable(held) else nullcontext()


def write_held(sink: Callable[..., None]) -> None:
    """`sink.write_held()` where the sink has it: the lines held by `together` written
    now (a writer about to wait); any other sink holds nothing."""
    held = getattr(sink, "write_held", None)
    if callable(held):
        held()


def _step(f: dict) -> str:
    index = f.get("index")
    return f"step {index + 1}" if isinstance(index, int) else "step ?"


def _step_started(f: dict) -> Told:
    return logging.INFO, (f"plan {f.get('plan')} {_step(f)} attempt {f.get('attempt')} "
                          f"started: {f.get('title')}")


def _step_ended(f: dict) -> Told | None:
    decision = f.get("decision")
    if f.get("outcome") == "ok" and decision == "continue":
        return logging.DEBUG, (f"plan {f.get('plan')} {_step(f)} attempt {f.get('attempt')} "
                               f"succeeded in {f.get('duration_s')}s")
    level = logging.ERROR if decision == "abort" else logging.WARNING
    return level, (f"plan {f.get('plan')} {_step(f)} ({f.get('title')}) attempt "
                   f"{f.get('attempt')} ended {f.get('outcome')} ({f.get('exit')}): "
                   f"{decision}; log {f.get('log')}")


def _status_changed(f: dict) -> Told | None:
    status, plan = f.get("status"), f.get("plan")
    if f.get("by") != "daemon":  # a person's command or a decided ticket, seen by the daemon
        return logging.INFO, (f"plan {plan} is {status} (was {f.get('previous')}, "
                              f"by {f.get('by')}: {f.get('action')})")
    if status == "completed":
        return logging.INFO, f"plan {plan} completed"
    if status == "failed":
        return logging.ERROR, f"plan {plan} failed: {f.get('reason')}"
    return None  # executing: "claimed" is logged; paused: ticket_opened tells it


def _ticket_opened(f: dict) -> Told:
    if f.get("trigger"):  # a trigger's overflow: no plan waits
        return logging.WARNING, (f"trigger {f.get('trigger')}: {f.get('reason')}; ticket "
                                 f"{f.get('ticket')} tells a person")
    return logging.WARNING, (f"plan {f.get('plan')} paused: {f.get('reason')}; ticket "
                             f"{f.get('ticket')} ({f.get('severity')}) waits for a person")


def _ticket_decided(f: dict) -> Told:
    note = f"; {f['note']}" if f.get("note") else ""
    return logging.INFO, (f"ticket {f.get('ticket')} decided: {f.get('decision')} plan "
                          f"{f.get('plan')}{note}")


def _orphan_step(f: dict) -> Told:
    then = "runs again" if f.get("rerun") else "must not run twice: the plan pauses"
    return logging.WARNING, (f"plan {f.get('plan')} {_step(f)} attempt {f.get('attempt')} "
                             f"was interrupted (a daemon stopped or died): it {then}")


def _stale_save(f: dict) -> Told:
    return logging.INFO, (f"plan {f.get('plan')}: a save of rev {f.get('file_rev')} "
                          f"(older than the daemon's rev {f.get('record_rev')}) was repaired, "
                          f"keeping the person's edits")


def _another_plan(f: dict) -> Told:
    return logging.WARNING, (f"plan {f.get('plan')}: the daemon's record of that id (rev "
                             f"{f.get('record_rev')}) was written for another plan; this "
                             f"file is a new plan, run as it stands")


def _cron_fired(f: dict) -> Told:
    return logging.INFO, (f"cron {f.get('cron')} fired {f.get('plan')} for "
                          f"{f.get('scheduled_for')}")


def _cron_skipped(f: dict) -> Told:
    if f.get("reason") == "overlap":
        return logging.INFO, (f"cron {f.get('cron')} skipped its fire for "
                              f"{f.get('scheduled_for')}: {f.get('blocked_by')} is still "
                              f"{f.get('blocked_status')} (overlap: skip)")
    return logging.INFO, (f"cron {f.get('cron')} skipped {f.get('count')} fire(s) up to "
                          f"{f.get('scheduled_for')}: {f.get('reason')}")


def _cron_missed(f: dict) -> Told:
    return logging.WARNING, (f"cron {f.get('cron')} missed {f.get('count')} fire(s) "
                             f"(catch_up: {f.get('catch_up')}): "
                             f"{', '.join(map(str, f.get('listed') or []))}"
                             + (f" and {f['unlisted']} more" if f.get("unlisted") else ""))


def _retry_scheduled(f: dict) -> Told:
    return logging.INFO, (f"plan {f.get('plan')} {_step(f)} will be retried at {f.get('at')} "
                          f"(failure {f.get('failures')}); the plan is released meanwhile")


def _trigger_fired(f: dict) -> Told:
    what = f"delivery {f['delivery_id']}" if f.get("delivery_id") else \
        f"{f.get('paths')} changed path(s)"
    return logging.INFO, f"trigger {f.get('trigger')} fired {f.get('plan')} for {what}"


def _trigger_overflow(f: dict) -> Told:
    return logging.WARNING, (f"trigger {f.get('trigger')}: more than {f.get('capacity')} "
                             f"changed paths pending; {f.get('policy')} drops the rest of "
                             f"{f.get('batch')}")


_TELLERS: dict[str, Callable[[dict], Told | None]] = {
    "retry_scheduled": _retry_scheduled,
    "trigger_fired": _trigger_fired,
    "trigger_overflow": _trigger_overflow,
    "step_started": _step_started,
    "step_ended": _step_ended,
    "status_changed": _status_changed,
    "ticket_opened": _ticket_opened,
    "ticket_decided": _ticket_decided,
    "orphan_step": _orphan_step,
    "stale_save_repaired": _stale_save,
    "record_of_another_plan": _another_plan,
    "cron_fired": _cron_fired,
    "cron_skipped": _cron_skipped,
    "cron_missed": _cron_missed,
}

"""The daemon's own record of the keys it owns in a plan, and stale-save repair.

`.modulatio/state/<PROJECT>/<plan-id>.json` holds the `rev` of the daemon's
last write, the values it wrote for its own keys and status, and the status it
wrote at each rev. Only the holder of the plan's lock writes it, always after
the plan file, so a crash between the two leaves the file ahead (trusted).

An editor that saves an old buffer puts back an old `rev`. Reading a plan:
- file rev >= record rev: the file is current; a person's edits are honoured.
- file rev <  record rev: a stale save. The daemon's keys come back from the
  record; the person's keys stay as saved. The status stays as saved only if
  it is one a person may set and differs from what the daemon wrote at that
  rev (the person changed it in the old buffer); otherwise it comes back too.

A record repairs only the plan it was written for. Its `birth` is who that plan
was at the record's first write: its `created_at` (as text; None without one), its
`title` and the digest of its steps. A plan id can be given to another plan (its
project folder deleted and the state kept, then a plan written by hand with the old
id): `belongs` tells, when the holder first reads the plan, whether the file is the
record's plan; when it is not, the holder drops the record (repairs nothing) and its
next write starts a new one whose rev goes on past the old record's. The rule:
- file rev > 0: a daemon wrote that file (or a copy of it): the record's plan.
- file rev 0 (no daemon ever wrote it: a buffer from before the first write, or a
  new plan): both with a created_at, the same created_at (a title or step edit in the
  old buffer is still that plan; `plan new` gives a new plan a fresh one); else the
  same title or the same steps (a hand-written plan with neither is a new plan).
- a record without `birth` (written before it existed): the record's plan, as before.
A record whose plan is gone for good stays: it reserves its id (ops/plans.py
next_plan_number) and is read only when a file with that id appears.

The record is a line of JSON appended to the file at each write, the file
written anew every few lines (store/record_lines.py: the value is the last
complete line; a torn last line leaves the one before it, an older record). It
is not fsynced: it is never the only copy of anything. The plan file, written
durably first, holds every value the record holds; a record that is missing, unreadable, empty
or older than the file (what a power loss can leave) makes the file trusted as
it stands, which is what a crash between the two writes gives anyway. What a
lost record costs: an editor buffer saved stale after a power loss and before
the next daemon write is taken as a person's edit (the same as an edit of a plan
with no record). A killed daemon loses nothing: the kernel has the write.

The reflection_log, which grows a line a step, is in the JSON's `keys` while it is
empty, or short (at most INLINE entries) and the previous record had no log file: a
plan of a few steps (most plans) creates no second file, at its claim nor at its end.
Past that it is the first `log.entries` lines (`log.bytes` bytes) of
`<plan-id>.log.jsonl` beside it, one entry a line (a record with `log` reads the file;
one without reads the log from its `keys`). A write that only added entries to the
log it last recorded (the daemon's own steps) appends their lines there and then
the record's line; any other log (read from a person's save) rewrites the file whole. So a step
costs the same at entry 100 and at entry 20,000. The lines are written before the
JSON that counts them: lines past `log.bytes` (a crash between the two) are
ignored and overwritten; a file shorter than `log.bytes` makes the record unreadable,
which trusts the plan file as it stands. The plan keeps only a window of its log
(store/reflections.py): when entries leave the window, the file's first `log.skip`
lines are the ones that left, skipped on reading, until they outnumber the window's
and the file is written anew.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from modulatio_d.core import digest
from modulatio_d.core.checks import check_own_keys
from modulatio_d.core.errors import BadFile
from modulatio_d.core.plan import DAEMON_KEYS, PERSON_SETS, Plan, PlanStatus
from modulatio_d.core.times import format_time, parse_time
from modulatio_d.store import atomic, fs, record_lines

_HISTORY = 64  # status changes remembered: an editor buffer older than that is rare
SKIP_FLOOR = 64  # lines of the log file that left the window kept before it is rewritten
INLINE = 8
"""Entries of a reflection_log kept in the record's JSON while it has no file of its own:
each write copies them (bounded), and a short plan creates no log file at all."""


@dataclass
class Record:
    rev: int
    status: str
    keys: dict[str, Any]
    status_by_rev: list[tuple[int, str]] = field(default_factory=list)
    log_bytes: int = 0
    """Bytes of the log file holding keys["reflection_log"] (see the module docstring)."""
    log_lines: int = 0
    """Lines of that file; the log is its last len(keys["reflection_log"]) of them."""
    birth: dict[str, Any] | None = None
    """{created_at, title, steps} of the plan at the record's first write (`belongs`)."""
    tail: record_lines.Tail | None = None
    """Where the record's file ends, for the next write's append (record_lines.py)."""

    def status_at(self, rev: int) -> str | None:
        found = None
        for at, status in self.status_by_rev:
            if at <= rev:
                found = status
        return found


def load(path: Path) -> Record | None:
    try:
        data, tail = record_lines.parse(fs.read(path, "record").raw)
        record = Record(rev=int(data["rev"]), status=PlanStatus(data["status"]).value,
                        keys=dict(data["keys"]),
                        status_by_rev=[(int(r), str(s)) for r, s in data.get("status_by_rev",
                                                                             [])],
                        tail=tail)
        if isinstance(data.get("birth"), dict):
            record.birth = {k: data["birth"].get(k) for k in ("created_at", "title", "steps")}
        if "log" in data:  # the reflection_log, from its own file
            entries, size = int(data["log"]["entries"]), int(data["log"]["bytes"])
            raw = fs.read(log_path(path), "record log").raw[:size]
            lines = raw.splitlines()
            skip = int(data["log"].get("skip", 0))
            if len(raw) != size or len(lines) != entries or not 0 <= skip <= entries:
                return None  # the log file lost lines (a power loss): trust the plan file
            record.keys["reflection_log"] = [json.loads(line) for line in lines[skip:]]
            record.log_bytes, record.log_lines = size, entries
        # A repair writes these keys into the plan: ones the plan's reader would refuse
        # (a record edited by hand) must not get there.
        check_own_keys(path, record.keys)
        return record
    except FileNotFoundError:
        return None
    except (BadFile, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None  # unreadable: the file is trusted as it stands, and the next write mends it


def save(path: Path, plan: Plan, previous: Record | None,
         before: tuple[int, str] | None = None) -> Record:
    """Record `plan` as written; `before` is (rev, status) of the file it was written over."""
    history = list(previous.status_by_rev) if previous else []
    # The status a person's old buffer may still hold: without it, the status of
    # a file from before the first write would look like the person's own edit.
    # A stale file (behind the record) says nothing new about its rev: skip it.
    if before is not None and (previous is None or before[0] >= previous.rev) \
            and (not history or history[-1][1] != before[1]):
        history.append(before)
    if not history or history[-1][1] != plan.status.value:
        history.append((plan.rev, plan.status.value))
    record = Record(plan.rev, plan.status.value, plan.own_keys(), history[-_HISTORY:],
                    birth=(previous.birth if previous and previous.birth else birth_of(plan)))
    log = list(record.keys.get("reflection_log") or [])
    record.keys["reflection_log"] = log
    data: dict[str, Any] = {"rev": record.rev, "status": record.status}
    if not log or (len(log) <= INLINE and not (previous is not None and previous.log_bytes)):
        data["keys"] = record.keys  # the short log in it: no file of its own (docstring)
    else:
        record.log_bytes, record.log_lines = _save_log(log_path(path), log, previous)
        data["keys"] = {k: v for k, v in record.keys.items() if k != "reflection_log"}
    data.update(status_by_rev=record.status_by_rev, birth=record.birth)
    if record.log_bytes:
        data["log"] = {"entries": record.log_lines, "bytes": record.log_bytes,
                       **({"skip": record.log_lines - len(log)} if record.log_lines > len(log)
                          else {})}
    # Key order kept: a repair rewrites dicts as the daemon wrote them. Times are
    # turned to text by json's default hook. Not durable (no fsync; see the module
    # docstring): a whole line is enough (store/record_lines.py).
    record.tail = record_lines.write(path, data, previous.tail if previous is not None
                                     else None, default=_time_text)
    return record


def log_path(path: Path) -> Path:
    """The file of a record's reflection_log lines."""
    return path.with_name(path.stem + ".log.jsonl")


def _lines(entries: list) -> bytes:
    return "".join(json.dumps(e, default=_time_text) + "\n" for e in entries).encode()


def _slid(old: list, log: list) -> int | None:
    """How many entries `log` dropped from the front of `old` when it is `old` slid and
    grown (the same entry objects: the daemon's own steps, store/reflections.py)."""
    if not log:
        return None
    drop = next((n for n, e in enumerate(old) if e is log[0]), None)
    if drop is None or len(log) < len(old) - drop or log[len(old) - drop - 1] is not old[-1]:
        return None
    return drop


def _save_log(path: Path, log: list, previous: Record | None) -> tuple[int, int]:
    """Write `log` to its file; the file's size and lines. Only the new lines when `log`
    is the previous record's log grown, perhaps less entries at its front (moved out of
    the plan): the file's first lines are then skipped, until they outnumber the log's
    (then the file is written anew: a bounded rewrite once per window)."""
    old = previous.keys.get("reflection_log") if previous else None
    drop = _slid(old, log) if old and previous is not None and previous.log_bytes else None
    if drop is not None and previous is not None \
            and previous.log_lines - len(old) + drop <= max(len(log), SKIP_FLOOR):
        new = _lines(log[len(old) - drop:])
        fd = fs.open_regular(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, previous.log_bytes)  # lines of a write whose JSON never landed
            fs.pwrite_all(fd, new, previous.log_bytes)
        finally:
            fs.close(fd)
        return previous.log_bytes + len(new), previous.log_lines + len(log) - len(old) + drop
    data = _lines(log)
    atomic.replace(path, data, durable=False, folders=True)
    return len(data), len(log)


def birth_of(plan: Plan) -> dict[str, Any]:
    """Who `plan` is, as a record keeps it (see `belongs`)."""
    created = plan.data.get("created_at") if isinstance(plan.data, dict) else None
    return {"created_at": None if created is None else _when(created), "title": plan.title,
            "steps": digest.of_plan(plan.sub_objectives)}


def belongs(plan: Plan, record: Record) -> bool:
    """Whether `record` was written for `plan` as read (the rule: the module docstring)."""
    if plan.rev > 0 or record.birth is None:
        return True
    now, then = birth_of(plan), record.birth
    if now["created_at"] is not None and then.get("created_at") is not None:
        return now["created_at"] == then["created_at"]
    return now["title"] == then.get("title") or now["steps"] == then.get("steps")


def repairs(plan: Plan, record: Record | None) -> dict[str, Any]:
    """The keys to write back when `plan` as read is a stale save; {} when it is current."""
    if record is None or plan.rev >= record.rev:
        return {}
    changes = {k: record.keys.get(k) for k in DAEMON_KEYS if k != "rev"}
    for key in ("execution_started_at", "completed_at"):  # JSON holds them as text
        changes[key] = parse_time(changes[key])
    person_changed = plan.status.value != record.status_at(plan.rev)
    if not (person_changed and plan.status in PERSON_SETS):
        changes["status"] = record.status
    changes["rev"] = record.rev
    return changes


def _when(value: Any) -> str:
    """A created_at as text: a time as the daemon writes times, anything else as written."""
    try:
        return format_time(value, micro=True) if isinstance(value, datetime) else str(value)
    except (ValueError, OverflowError):  # a time out of range once made UTC
        return str(value)


def _time_text(value: Any) -> str:
    if hasattr(value, "isoformat"):
        return format_time(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")

"""The reflection log's older entries: `<plan-id>.reflection_log.jsonl` beside the plan.

A plan keeps at most a window of its latest reflection entries in its own file
(`reflection_log`; config `defaults.reflection_window`, default WINDOW). When a
write of the lock holder would take the window past that, its oldest entries
but the newest half of the window move here, one JSON line an entry, in the
log's order, and the plan's `reflection_archived: {entries, duration_s}` counts
them (and their running time, for the wall_clock budget). The whole log is this
file's first `entries` lines, then the plan's `reflection_log`. So a step costs
the same at entry 100 and at entry 20,000: the plan file stays the size of its
window, and a move (one write and one fsync) comes once per half a window.

Protocol (store/plan_file.py HeldPlan.update, under the plan's lock), so that no
entry is lost or doubled whatever instant the process dies:
1. the moving entries are written at the byte offset where line `entries` (the
   count of the plan as read) begins, the file is cut after them, fsynced (and
   its folder, when the file is new);
2. the plan file is written, durably as every write, with the window less those
   entries and the new count.
A crash between 1 and 2 leaves the plan as it was, with lines past its count
here: readers take only the first `entries` lines, and the next move writes over
them (step 1 writes at the count's offset, never at the end). A write tried
again (a person saved meanwhile) writes the same bytes at the same place. Only
the lock holder writes the file; readers need no lock (lines are only ever
added past the count a plan names).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from modulatio_d.core.errors import BadFile
from modulatio_d.core.plan import Plan
from modulatio_d.core.times import format_time
from modulatio_d.store import fs

WINDOW = 200
"""Entries a plan file keeps by default: a plan of up to 200 attempts never moves any."""
SUFFIX = ".reflection_log.jsonl"


def path_of(plan_path: Path) -> Path:
    return plan_path.with_name(plan_path.stem + SUFFIX)


def overflow(entries: int, window: int) -> int:
    """How many of a log of `entries` entries move out (0: it fits the window)."""
    return entries - max(1, window // 2) if entries > window else 0


def read(plan_path: Path, entries: int) -> list[dict]:
    """The first `entries` entries of the plan's file; BadFile when it holds fewer or one
    is not a JSON mapping (a file edited or cut by hand)."""
    if entries <= 0:
        return []
    path = path_of(plan_path)
    try:
        raw = fs.read(path, "reflection log").raw
    except FileNotFoundError:
        raw = b""
    lines = raw.split(b"\n")
    if len(lines) - 1 < entries:  # the piece after the last newline is no complete line
        raise BadFile(path, f"holds {len(lines) - 1} complete lines, fewer than the "
                      f"{entries} its plan counts (reflection_archived)",
                      hint="put the file back from a backup; plan show then shows them")
    lines = lines[:entries]
    out = []
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            raise BadFile(path, f"line {n} is not a JSON mapping", line=n,
                          hint="put the file back from a backup")
        out.append(entry)
    return out


def whole(plan: Plan) -> list[dict]:
    """The plan's whole reflection log: the moved entries, then the window."""
    return [*read(plan.path, plan.archived), *plan.reflection_log]


def _offset(path: Path, entries: int) -> int:
    """Where line `entries` begins (after the last complete line when fewer)."""
    try:
        raw = fs.read(path, "reflection log").raw
    except FileNotFoundError:
        return 0
    at = 0
    for _ in range(entries):
        end = raw.find(b"\n", at)
        if end < 0:
            break
        at = end + 1
    return at


def move(plan_path: Path, at: int, entries: list[dict],
         offsets: dict[int, int]) -> None:
    """Step 1 of the protocol: `entries` as lines `at`, `at + 1`, ... of the file, then
    nothing; durable. `offsets` (entries -> byte offset) is the caller's memory of the
    file, updated here; an unknown count is looked up by reading the file once."""
    path = path_of(plan_path)
    start = offsets.get(at)
    if start is None:
        start = _offset(path, at)
    data = "".join(json.dumps(e, default=_time_text) + "\n" for e in entries).encode()
    new = not fs.exists(path)
    fd = fs.open_regular(path, os.O_RDWR | os.O_CREAT, cap=fs.mode_of(plan_path))
    try:
        # cut what follows: lines of a move whose plan write never landed
        os.ftruncate(fd, fs.pwrite_all(fd, data, start))
        os.fsync(fd)
    finally:
        fs.close(fd)
    if new:
        fs.fsync_dir(path.parent)
    offsets.clear()
    offsets.update({at: start, at + len(entries): start + len(data)})


def _time_text(value: object) -> str:
    if hasattr(value, "isoformat"):
        return format_time(value)  # type: ignore[arg-type]
    raise TypeError(f"{type(value).__name__} is not JSON serializable")

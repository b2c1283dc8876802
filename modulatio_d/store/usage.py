"""`<plan-id>.usage.jsonl`: one JSON line per executor call, and its sums.

A line: timestamp, model, input_tokens, output_tokens, cost_usd, call_id,
agent_id, plan_id, step_index, attempt, duration_s. Steps may append their own
lines to $MODULATIO_USAGE_FILE (a scratch file per attempt); the daemon checks
each, skips a malformed one with a warning naming file and line, fills in the
plan fields, and appends the good ones to the plan's usage file.

Usage files are read line by line (store/fs/: never whole, a line over
64 KiB skipped with a warning) and written through store/fs/: a link, or a
file that is not a regular file with one link, is refused. A usage file is
created no more readable than its plan (its mode is capped by the plan's).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from modulatio_d.store import fs

log = logging.getLogger("modulatio.usage")

FIELDS = ("timestamp", "model", "input_tokens", "output_tokens", "cost_usd", "call_id",
          "agent_id")


@dataclass(frozen=True)
class Totals:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, lines: list[dict]) -> Totals:
        return Totals(
            self.calls + len(lines),
            self.input_tokens + sum(int(u.get("input_tokens") or 0) for u in lines),
            self.output_tokens + sum(int(u.get("output_tokens") or 0) for u in lines),
            self.cost_usd + sum(float(u.get("cost_usd") or 0) for u in lines))

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.calls + other.calls, self.input_tokens + other.input_tokens,
                      self.output_tokens + other.output_tokens, self.cost_usd + other.cost_usd)

    def as_dict(self) -> dict:
        return {"calls": self.calls, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost_usd": round(self.cost_usd, 6)}


def usage_path(plan_path: Path) -> Path:
    return plan_path.with_suffix(".usage.jsonl")


def check(usage: object) -> str | None:
    """Why a usage line (decoded) is malformed, or None when it is fine."""
    if not isinstance(usage, dict):
        return "not a JSON object"
    for key in ("input_tokens", "output_tokens"):
        v = usage.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            return f"{key} must be a whole number >= 0"
    v = usage.get("cost_usd", 0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        return "cost_usd must be a number >= 0"
    return None


def iter_lines(path: Path | str, warn: bool = False, start: int = 0) -> Iterator[dict]:
    """The well-formed lines of a usage file, decoded; with `warn`, log each bad one.
    `start`: the byte offset to read from (what was there before is not counted).

    A missing file has none; a refused one (a link, a FIFO...) has none either,
    with a warning: usage must never stop a plan or a command.
    """
    try:
        for n, raw in fs.lines(path, "usage line", start=start):
            if raw is None:
                problem = f"longer than {fs.LIMITS['usage line']} bytes"
            elif not raw.strip():
                continue
            else:
                try:
                    usage = json.loads(raw.decode("utf-8", "replace"))
                    problem = check(usage)
                except ValueError as e:
                    problem = f"not JSON ({getattr(e, 'msg', e)})"
                except RecursionError:  # [[[[... thousands deep: json gives up this way
                    problem = "not JSON (nested too deep)"
            if problem:
                if warn:
                    log.warning("%s:%d: usage line skipped: %s", path, n, problem)
                continue
            yield usage
    except FileNotFoundError:
        return
    except fs.Refused as e:
        log.warning("usage not read: %s", e)


def read_lines(path: Path | str, warn: bool = False, start: int = 0) -> list[dict]:
    return list(iter_lines(path, warn, start))


def totals(path: Path | str) -> Totals:
    """The sums of a usage file, read line by line (never held whole)."""
    calls = inp = out = 0
    cost = 0.0
    for u in iter_lines(path):
        calls += 1
        inp += int(u.get("input_tokens") or 0)
        out += int(u.get("output_tokens") or 0)
        cost += float(u.get("cost_usd") or 0)
    return Totals(calls, inp, out, cost)


def plan_of(path: Path) -> Path:
    """The plan whose usage file `path` is."""
    return path.with_name(path.name.removesuffix(".usage.jsonl") + ".md")


def append(path: Path, lines: list[dict], again: bool = False) -> None:
    """Append `lines` with one write() and fsync them; a new file gets at most its plan's
    mode (store/fs/: never through a link, only a regular file with one link).

    `again`: an earlier append of the same lines failed. If its write went
    through and only its fsync failed, the lines are the file's last bytes
    already (only the plan's holder appends here): they are not written twice.
    If it wrote half a line, that line is ended first, so it stays one
    malformed line (skipped with a warning by readers) instead of gluing itself
    to ours.
    """
    if not lines:
        return
    data = "".join(json.dumps(u, sort_keys=True) + "\n" for u in lines).encode()
    try:
        fd = fs.open_regular(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:  # the first line: the plan's mode looked up only now
        fd = fs.open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT,
                             cap=fs.mode_of(plan_of(path)))
    try:
        if again:
            size = os.fstat(fd).st_size
            if size >= len(data) and os.pread(fd, len(data), size - len(data)) == data:
                os.fsync(fd)  # a new descriptor: the earlier fsync's error is not ours
                return
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        fs.close(fd)

"""A small JSON state file written by appending: its value is its last complete line.

Used for the daemon's record of its keys (store/owned_keys.py), written after every
plan write: a rewrite through a temp file and a rename costs a file creation (about
0.7 ms on ext4, the largest part of a step's bookkeeping after the durable writes),
an append costs a `pwrite`. The protocol:

- The file is lines of JSON, each ended by a newline; the value is the last line
  that is complete (ends with a newline). A torn last line (a power loss in the
  middle of an append) is ignored: the value is then the line before it, an older
  one, which the caller must take as it takes a file that was not yet rewritten
  (for the record: older than the plan file, so the plan file is trusted).
- A file without any newline is the one-object form written before this module: it
  is read whole.
- The writer knows where the last good line ends (`Tail`, from its last read or
  write) and writes its line there with `pwrite`, cutting whatever follows (a torn
  line). Only one process writes a given file at a time (the plan's lock holder).
- Every `COMPACT_LINES` lines, or when the file would pass `COMPACT_BYTES`, the file
  is written anew with only the new line, atomically (temp file and rename): reads
  stay small and the file bounded.

No write here is fsynced: the caller decides what durability it needs (the record
needs none: owned_keys.py says why).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modulatio_d.store import atomic, fs

COMPACT_LINES = 32
COMPACT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Tail:
    """Where the file's last good line ends (`end` bytes), and how many lines it has."""
    end: int = 0
    lines: int = 0


def parse(raw: bytes) -> tuple[Any, Tail]:
    """The value of a file's bytes, and its tail. Raises ValueError when there is no
    complete line or the last one is not JSON."""
    if b"\n" not in raw:
        return json.loads(raw), Tail()  # the old one-object form: rewritten at the next write
    end = raw.rindex(b"\n") + 1
    start = raw.rfind(b"\n", 0, end - 1) + 1
    return json.loads(raw[start:end]), Tail(end, raw.count(b"\n", 0, end))


def write(path: Path, value: Any, tail: Tail | None, default=None) -> Tail:
    """Make `value` the file's value: appended after `tail`, or the file written anew (no
    tail known, or time to compact). Returns the new tail."""
    line = json.dumps(value, default=default).encode() + b"\n"
    if tail is not None and tail.end and tail.lines < COMPACT_LINES \
            and tail.end + len(line) <= COMPACT_BYTES:
        appended = _append(path, line, tail.end)
        if appended:
            return Tail(tail.end + len(line), tail.lines + 1)
    atomic.replace(path, line, durable=False, folders=True)
    return Tail(len(line), 1)


def _append(path: Path, line: bytes, end: int) -> bool:
    """Write `line` at `end` and cut what follows; False when the file is not the one we
    last wrote (deleted, which is allowed, or shorter)."""
    try:
        fd = fs.open_regular(path, os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(fd).st_size
        if size < end:
            return False
        at = fs.pwrite_all(fd, line, end)
        if size > at:
            os.ftruncate(fd, at)  # what followed: a line torn by a power loss
        return True
    finally:
        fs.close(fd)

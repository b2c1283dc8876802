"""A step attempt's log file: its name, its header, its size cap.

Names: `<plan-id>.runs/<SSSS>-<AA>.log` (and `.usage.jsonl` for the scratch
usage file), the step counted from 1 and the attempt, zero-padded so that a
folder listing sorts them in run order (`0002-01.log` before `0010-01.log`).

Header: before the child starts, the daemon writes three lines, each
beginning `== modulatio:` (plan, step, attempt, start time; the command; the
folder), so a log read alone says what produced it. Environment values are
never written (they may hold secrets). A step run again after a person
rewound `current_index` appends to its earlier log, after a new header.

Cap (`retention: {max_log_bytes}` in the config, default DEFAULT_MAX_LOG_BYTES):
checked at each beat of the running attempt and when it ends. A log over the
cap keeps its first half (the header and how the step began) and its last
half (how it ended), with one marker line between them saying how many bytes
were cut. The child writes with O_APPEND, so a trim (ftruncate to the head,
then the marker and the tail written after it) never leaves a hole; output
the child writes during the trim itself may be lost, which the marker allows.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime
from pathlib import Path

from modulatio_d.core.times import format_time
from modulatio_d.store import fs

DEFAULT_MAX_LOG_BYTES = 4 * 1024 * 1024
_MARK = "\n== modulatio: {n} bytes cut here (the log is capped at {cap} bytes: " \
        "retention.max_log_bytes) ==\n"


def names(index: int, attempt: int) -> tuple[str, str]:
    """(log, scratch usage) file names of attempt `attempt` of the 0-based step `index`."""
    # an in_flight record may hold null (accepted, harmless): never a crash here
    step = f"{index + 1:04d}" if isinstance(index, int) else "0000"
    stem = f"{step}-{attempt:02d}" if isinstance(attempt, int) else f"{step}-00"
    return f"{stem}.log", f"{stem}.usage.jsonl"


def header(plan_id: str, index: int, title: str, attempt: int, started: datetime,
           argv: list[str], cwd: Path) -> bytes:
    title = " ".join(title.split())
    return (f"== modulatio: plan {plan_id} step {index + 1} “{title}” attempt {attempt}, "
            f"started {format_time(started)}\n"
            f"== modulatio: command {shlex.join(argv)}\n"
            f"== modulatio: cwd {cwd}\n").encode("utf-8", "backslashreplace")


def trim(path: Path, cap: int) -> int:
    """Cap the log at about `cap` bytes (see above); the bytes cut (0: under the cap)."""
    if cap <= 0:
        return 0
    try:
        size = fs.stat_of(path).st_size
    except OSError:
        return 0
    if size <= cap:
        return 0
    fd = fs.open_regular(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        half = cap // 2
        head = os.pread(fd, half, 0)
        tail_len = cap - half
        tail = os.pread(fd, tail_len, max(size - tail_len, half))
        cut = size - len(head) - len(tail)
        if cut <= 0:
            return 0
        os.ftruncate(fd, len(head))
        data = _MARK.format(n=cut, cap=cap).encode() + tail
        os.pwrite(fd, data, len(head))
        return cut
    finally:
        fs.close(fd)

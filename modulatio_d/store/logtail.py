"""Reading a growing log without reading all of it: events.jsonl and a step's output.

A `Tail` opens the file once (store/fs/: a regular file, never through a link)
and remembers its size then (`end`) and its inode. From that descriptor:
- `backwards(until)`: complete lines from `end` towards the start, newest
  first, in BLOCK-sized reads, for as long as the caller wants more (`--last N`
  reads as many blocks as N lines need, not the file);
- `seek(key, target)`: the offset of the first line whose key (a time) is at or
  after `target`, by bisection on byte offsets (each probe reads the line after
  a point): O(log size) reads. The key is the caller's; a line it cannot read is
  passed over. Lines written by several daemons are in time order to within
  their clocks' skew: the seek may start a few lines early or late around skew;
- `forward(start)`: complete lines from `start` up to `end`.
Only complete lines count: a last line without its newline is a write in
progress, read once it is whole.

`follow()`: after `end`, the lines as they are written. It polls every
FOLLOW_POLL_S (one fstat or read) and, when the path no longer names the inode
it reads (the log was rotated: renamed away, a new file made in its place),
reads the old file to its end, then opens the new one from its start. A path
that is missing for a while (between the rename and the first new write) is
waited for. So the follower depends on no rotated file name, only on the
rotation being a rename (every writer opens the log per line with O_APPEND, so
a rename loses no line: store/events.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from modulatio_d.store import fs

BLOCK = 64 * 1024
FOLLOW_POLL_S = 0.05
"""Polling the followed file: `events --follow` and `logs --follow` show a line within
this (plus the time to print it) of its write."""


class Tail:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.fd = fs.open_regular(self.path, os.O_RDONLY)
        st = os.fstat(self.fd)
        self.ino = (st.st_dev, st.st_ino)
        self.end = _last_newline(self.fd, st.st_size)

    def close(self) -> None:
        if self.fd >= 0:
            fs.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Tail:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- history ----------------------------------------------------------------------

    def backwards(self) -> Iterator[bytes]:
        """Complete lines before `end`, newest first."""
        pos = self.end
        carry = b""
        while pos > 0:
            size = min(BLOCK, pos)
            pos -= size
            chunk = os.pread(self.fd, size, pos) + carry
            parts = chunk.split(b"\n")
            carry = parts[0]
            for line in reversed(parts[1:]):
                if line:
                    yield line
        if carry:
            yield carry

    def forward(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Complete lines from byte `start` (a line's start) up to `stop` (`end`)."""
        stop = self.end if stop is None else stop
        pos = start
        carry = b""
        while pos < stop:
            chunk = os.pread(self.fd, min(BLOCK, stop - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            parts = (carry + chunk).split(b"\n")
            carry = parts.pop()
            yield from (p for p in parts if p)

    def seek(self, key: Callable[[bytes], object], target: object) -> int:
        """The offset of the first line whose key is >= target (bisection, see above)."""
        lo, hi = 0, self.end
        while lo < hi:
            mid = (lo + hi) // 2
            start = self._line_start_after(mid, lo)
            if start >= hi:
                hi = mid  # no line starts in [mid, hi): look left
                continue
            line_end = self._line_end(start)
            k = key(os.pread(self.fd, line_end - start, start))
            if k is None:
                lo = line_end + 1  # unreadable: passed over
            elif k < target:  # type: ignore[operator]
                lo = line_end + 1
            else:
                hi = start
        return lo

    def _line_start_after(self, pos: int, lo: int) -> int:
        """The start of the first line at or after `pos` (`pos` itself at `lo` or 0)."""
        if pos == lo or pos == 0:
            return pos
        nl = self._find_newline(pos - 1)
        return self.end if nl < 0 else nl + 1

    def _line_end(self, start: int) -> int:
        nl = self._find_newline(start)
        return self.end if nl < 0 else nl

    def _find_newline(self, pos: int) -> int:
        while pos < self.end:
            chunk = os.pread(self.fd, min(4096, self.end - pos), pos)
            i = chunk.find(b"\n")
            if i >= 0:
                return pos + i
            pos += len(chunk)
        return -1

    # --- following --------------------------------------------------------------------

    def follow(self, stop: Callable[[], bool] = lambda: False,
               sleep: Callable[[float], None] = time.sleep) -> Iterator[bytes]:
        """Lines written after `end`, as they come, across rotations (see above); ends
        when `stop()` says so at a moment with nothing to read."""
        pos = self.end
        carry = b""
        while True:
            chunk = os.pread(self.fd, BLOCK, pos)
            if chunk:
                pos += len(chunk)
                parts = (carry + chunk).split(b"\n")
                carry = parts.pop()
                self.end = pos - len(carry)  # a later follow() goes on from here
                yield from parts  # empty lines too: a step's output keeps its blank lines
                continue
            if self._rotated():
                nxt = self._reopen()
                if nxt is not None:
                    rest = _read_to_end(self.fd, pos)  # written before the rename
                    parts = (carry + rest).split(b"\n")
                    if not parts[-1]:
                        parts.pop()
                    yield from parts  # an unfinished last line included
                    fs.close(self.fd)
                    self.fd, self.ino = nxt
                    pos, carry, self.end = 0, b"", 0
                    continue
            if stop():
                return
            sleep(FOLLOW_POLL_S)

    def rest(self) -> bytes:
        """What follows `end`, an unfinished last line included (a step's output that
        ends without a newline), and `end` moved past it."""
        data = _read_to_end(self.fd, self.end)
        self.end += len(data)
        return data

    def _rotated(self) -> bool:
        try:
            st = fs.stat_of(self.path)
        except OSError:
            return True  # renamed away; the new file may not be there yet
        return (st.st_dev, st.st_ino) != self.ino

    def _reopen(self) -> tuple[int, tuple[int, int]] | None:
        try:
            fd = fs.open_regular(self.path, os.O_RDONLY)
        except (FileNotFoundError, fs.Refused):
            return None
        st = os.fstat(fd)
        return fd, (st.st_dev, st.st_ino)


def _last_newline(fd: int, size: int) -> int:
    """The offset just after the last newline before `size` (0 if none)."""
    pos = size
    while pos > 0:
        n = min(4096, pos)
        chunk = os.pread(fd, n, pos - n)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return pos - n + i + 1
        pos -= n
    return 0


def _read_to_end(fd: int, pos: int) -> bytes:
    out = []
    while chunk := os.pread(fd, BLOCK, pos):
        out.append(chunk)
        pos += len(chunk)
    return b"".join(out)

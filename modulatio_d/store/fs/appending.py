"""Appends to vault files (events.jsonl, usage, a step's log): one write() under an flock.

O_APPEND alone keeps writers apart on one kernel, not across the hosts of a network
filesystem (GlusterFS: records of three hosts interleaved). So each record is written
under an flock of the file, held for that write only (docs/multi-host.md).

The wait for the flock. Polling with LOCK_NB (a blocking flock could hang a daemon on a
holder that never lets go: a stuck process, a host cut off until its locks expire) is
not fair: with many writers at once one of them can lose every try for seconds while
the lock passes between the others. So the wait gives up only on a holder that makes no
progress: it waits APPEND_LOCK_WAIT_S, and again as long as the file grew meanwhile
(others are appending: the lock is moving), up to APPEND_LOCK_MAX_S in all. Then, or
on an flock error, the record is written without the lock, with a warning naming the
file. Where the filesystem has no flock (ENOLCK, EINVAL), one kernel's O_APPEND is
enough and nothing is said.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from pathlib import Path

from modulatio_d.store.fs.closing import close
from modulatio_d.store.fs.reading import retrying
from modulatio_d.store.fs.writing import open_regular

log = logging.getLogger("modulatio.fs")

APPEND_LOCK_WAIT_S = 2.0
"""How long an append waits for the file's flock while the file does not grow."""
APPEND_LOCK_MAX_S = 30.0
"""How long an append waits for the flock at most, however the file grows."""


def append(path: Path | str, data: bytes, *, cap: int | None = None, sync: bool = False,
           folders: bool = True, flush: bool = False) -> None:
    """Append `data` with one write() under an flock of the file (module docstring).

    `flush` (network filesystems): fdatasync before the flock is let go (write-behind
    answers close() early). The open is tried again after ESTALE, EIO."""
    fd = retrying(lambda: open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, cap=cap,
                                       folders=folders))
    try:
        unlocked = _lock_for_append(fd)
        if unlocked:
            log.warning("appending to %s without its flock: %s", path, unlocked)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
        elif flush:
            os.fdatasync(fd)
    finally:
        close(fd)


_BUSY_OR_PASSING = (errno.EWOULDBLOCK, errno.EINTR, errno.ESTALE, errno.EIO, errno.ENOTCONN)


def _lock_for_append(fd: int) -> str | None:
    """The flock of `fd` taken: None, else why not (ENOLCK, EINVAL: no flock here, and
    one kernel's O_APPEND is enough: None too)."""
    start = time.monotonic()
    deadline, size = start + APPEND_LOCK_WAIT_S, _size(fd)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return None
        except OSError as e:
            if e.errno in (errno.ENOLCK, errno.EINVAL):
                return None
            if e.errno not in _BUSY_OR_PASSING:  # a network client's passing errors: again
                return f"flock failed: {e.strerror}"
            now = time.monotonic()
            if now > deadline:
                grown = _size(fd)
                if grown == size or now - start >= APPEND_LOCK_MAX_S:
                    return (f"still held elsewhere after {now - start:.0f} s, the file "
                            f"{'not growing' if grown == size else 'growing'} (last: "
                            f"{e.strerror})")
                # the lock moves between the others: wait on, to APPEND_LOCK_MAX_S at most
                deadline = min(now + APPEND_LOCK_WAIT_S, start + APPEND_LOCK_MAX_S)
                size = grown
            time.sleep(0.002)


def _size(fd: int) -> int | None:
    try:
        return os.fstat(fd).st_size
    except OSError:
        return None

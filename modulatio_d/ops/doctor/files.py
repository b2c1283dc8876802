"""How `modulatio doctor` writes and reads its probe files, and watches their folder:
the same way the daemons write (a temp file renamed into place) and read (a new open()
each time), so that what is measured is what the daemons would see.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
import time
from pathlib import Path

from modulatio_d.store import fs


def write_atomic(path: Path, data: bytes) -> None:
    fs.rename(fs.temp(path, data, sync=False), path)  # through store/fs/: no link followed


_RETRIED = (errno.ESTALE, errno.EIO)


def read_retrying(path: Path, counts: dict[str, int] | None = None) -> bytes | None:
    """The file's bytes, None while it does not exist; ESTALE and EIO (a read racing a
    rename on another host) are retried, and counted."""
    for _ in range(100):
        try:
            return fs.read(path, "doctor probe").raw
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno not in _RETRIED:
                raise
            if counts is not None:
                counts[errno.errorcode[e.errno]] = counts.get(errno.errorcode[e.errno], 0) + 1
            time.sleep(0.001)
    return None


_IN_MASK = 0x00000080 | 0x00000100
"""IN_MOVED_TO and IN_CREATE: what the writer of a file does (a temp file renamed into
place) and a reader of it never causes, so events for the peer's files are the peer's."""


class Inotify:
    """A bare inotify watch on one folder (ctypes: no thread, unlike watchdog)."""

    def __init__(self, folder: Path):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init, add = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError):
            raise OSError(errno.ENOSYS, "this system has no inotify") from None
        self.fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        if add(self.fd, os.fsencode(folder), _IN_MASK) < 0:
            e = ctypes.get_errno()
            fs.close(self.fd)
            raise OSError(e, os.strerror(e))

    def names(self, timeout: float) -> list[str]:
        """The names of the events that arrive within `timeout` s (maybe none)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        try:
            buf = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        out, off = [], 0
        while off + 16 <= len(buf):
            _wd, _mask, _cookie, size = struct.unpack_from("iIII", buf, off)
            out.append(buf[off + 16: off + 16 + size].rstrip(b"\0").decode(errors="replace"))
            off += 16 + size
        return out

    def close(self) -> None:
        fs.close(self.fd)

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

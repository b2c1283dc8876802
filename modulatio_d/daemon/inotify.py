"""The file watcher's kernel side: inotify read on the daemon's own thread (daemon/wake.py).

watchdog hands each event through three threads and two queues, building event
objects on the way: about 0.3 ms of CPU an event on this project's machine. A
daemon sees every write in the folders it watches, its own and every other
daemon's on the vault (a plan write, a usage and two events appends: about ten
events a step), so with eight daemons their watchers together spent as much CPU
a step as all the daemons' own work. Here the descriptor is read by the daemon's
thread whenever it waits or looks for changes (`pump`, called by the Waker): the
events the kernel queued meanwhile come in one read, the structs are cut out of
the buffer and `tell(path, is_folder)` is told for each: the folder's path
joined with the name, as watchdog gave it. A thread of its own reading them as
they came cost a wake-up and a hand-over of the interpreter's lock an event: 1.4
ms of CPU a one-step plan, a fifth of it (docs/benchmarks.md, "Eighth pass").

What the kernel is asked (MASK): a file made, removed, moved in or out (each
half of a move told on its own) and a writer's close; folders' own removal
comes as IN_IGNORED (the watch is dropped: Watcher.watch makes a new one when
the folder is back). A folder removed inside a watched one is not told (as
with the watchdog filter). An overflow of the kernel's queue is told as
`tell(None, False)`: something changed, look (the tick is the truth anyway):
the kernel keeps 16,384 events a descriptor (fs.inotify.max_queued_events) while
the daemon is busy.
Links are never followed to a folder (IN_DONT_FOLLOW, IN_ONLYDIR).
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable

IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
MASK = (IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ONLYDIR
        | IN_DONT_FOLLOW)
_HEAD = struct.Struct("iIII")  # wd, mask, cookie, len (of the name, NUL-padded)

Tell = Callable[[str | None, bool], None]


class Inotify:
    """One inotify descriptor, read when `pump` is called; raises OSError when the
    kernel gives none (then the caller uses watchdog)."""

    def __init__(self, tell: Tell):
        libc = ctypes.CDLL(None, use_errno=True)
        self._add, self._rm = libc.inotify_add_watch, libc.inotify_rm_watch
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), "inotify_init1")
        self.fd = fd
        self._folders: dict[int, str] = {}
        self.tell = tell

    def add(self, folder: str) -> int:
        """Watch `folder` (not its subfolders); its watch descriptor."""
        wd = self._add(self.fd, os.fsencode(folder), MASK)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), folder)
        self._folders[wd] = folder
        return wd

    def remove(self, wd: int) -> None:
        self._folders.pop(wd, None)
        self._rm(self.fd, wd)  # EINVAL when the kernel dropped it already: nothing to do

    def alive(self, wd: object) -> bool:
        """Whether watch `wd` stands (the kernel drops it when its folder goes)."""
        self.pump()  # an IN_IGNORED still queued
        return wd in self._folders

    def is_alive(self) -> bool:
        return True  # no thread to die: the descriptor stands until stop()

    def stop(self) -> None:
        fd, self.fd = self.fd, -1  # a later pump reads nothing (the number may be reused)
        if fd >= 0:
            os.close(fd)

    def pump(self) -> None:
        """Tell every event the kernel holds now; never blocks, never raises."""
        while self.fd >= 0:
            try:
                data = os.read(self.fd, 64 * 1024)
            except OSError:  # EAGAIN: all read (EINTR: the next pump reads on)
                return
            if not data:
                return
            try:
                self._parse(data)
            except Exception:  # noqa: BLE001 (never let one odd event end the pump;
                pass           # the tick is the truth)

    def _parse(self, data: bytes) -> None:
        at = 0
        while at + _HEAD.size <= len(data):
            wd, mask, _cookie, size = _HEAD.unpack_from(data, at)
            name = data[at + _HEAD.size:at + _HEAD.size + size].split(b"\0", 1)[0]
            at += _HEAD.size + size
            if mask & IN_Q_OVERFLOW:
                self.tell(None, False)
                continue
            folder = self._folders.pop(wd, None) if mask & IN_IGNORED \
                else self._folders.get(wd)
            if folder is None or not name or (mask & IN_DELETE and mask & IN_ISDIR):
                continue  # the folder itself, or a subfolder removed: not told (see above)
            self.tell(os.path.join(folder, os.fsdecode(name)), bool(mask & IN_ISDIR))

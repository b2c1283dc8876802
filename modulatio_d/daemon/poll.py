"""Polling for changes inotify cannot see: other hosts' writes to a shared filesystem.

inotify reports only what this host's kernel wrote. On a network filesystem
(GlusterFS, JuiceFS, CephFS, NFS, SMB: core/filesystems.py, any tier but
LOCAL) a plan approved on another host raises no event, and an idle daemon
would see it only at its next tick. So, when the vault is on such a
filesystem, a thread polls the vault's root folder, `.modulatio/` (the config
and the pause file are replaced there) and the served projects' `plans/`,
`cron/` and `tickets/` folders every `poll_interval` seconds
(config.yaml, default 1 s), in addition to inotify, and does what the inotify
thread does: pokes the daemon's Waker with the path that changed.

The cost of a poll is one stat() per folder. Only a `plans/` folder whose
signature (inode, mtime, ctime) moved is listed, and only its plan files are
stat()ed; a plan whose signature moved (or that is new) is reported, and the
daemon looks at that plan alone. Any other folder that moved (a new project
in the root, a ticket or cron entry saved) is reported as itself: the daemon
ticks. A save by rename, as
every writer of the vault makes, moves its folder's mtime; a save in place
by an editor that does not rename is seen at the tick, as before. `watch`,
called by the daemon's loop before each scan, polls once at once: folders new
to the list get their baseline before the scan, so that a change made after
the scan is never part of a first look (which only records). A failing
stat (the mount cut off: ENOTCONN, a folder being deleted) is skipped until
the next poll: the thread never stops for it. The first poll of a folder only
records it.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from modulatio_d.daemon.wake import Waker
from modulatio_d.store import mounts

log = logging.getLogger("modulatio.poll")
POLLED = ("plans", "cron", "tickets")


CUT_OFF_ERRNOS = (errno.ENOTCONN, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTDOWN,
                  errno.ENODEV, errno.ESTALE)
"""ESTALE too: a handle another host's rename made stale, which only a network mount
gives; the reads and writes that meet it most try again themselves (store/fs), and one
met anywhere else in a pass of the loop is waited out the same way, never the end."""


def cut_off(error: BaseException | None) -> bool:
    """Whether `error` (or what caused it: a FileUnusable wraps the OSError) says the
    vault's network mount is cut off, rather than anything about a file: the daemon
    waits for the mount to come back (tested on the GlusterFS bed), it does not exit."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError) and error.errno in CUT_OFF_ERRNOS:
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


FAILED_PASSES = 3
"""Passes in a row that one system error (not a cut-off mount's) may fail before it ends
the daemon (exit 3). A network client answers a race with another host's write now and
then with an errno nobody foresaw (GlusterFS: `close()` failing with ENOENT, found when
it ended a daemon: docs/multi-host.md); one such answer costs a tick. An error that
stays (a full disk, a permission taken away) still ends the daemon, two ticks later."""


class Outage:
    """The vault's mount cut off, as the daemon's loop meets it: told once (a warning),
    and once more when a tick reads the vault again. Any other system error failing a
    pass is told and waited out too, unless the same one failed FAILED_PASSES passes in
    a row (`start_pass` says where a pass begins)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic):
        self.monotonic = monotonic
        self.since: float | None = None
        self.failing: tuple[str, int | None, str | None] | None = None  # the last pass's
        self.failed = 0  # passes in a row that `failing` failed
        self._pass_failed = False

    def met(self, error: BaseException) -> bool:
        """True (told the first time) when `error` is a cut-off mount's: wait a tick."""
        if not cut_off(error):
            return False
        if self.since is None:
            self.since = self.monotonic()
            log.warning("the vault cannot be read now (%s): waiting for it, trying again "
                        "each tick", error)
        return True

    def start_pass(self) -> None:
        """A pass of the loop begins: a pass that did not fail ends a run of failures."""
        if not self._pass_failed:
            self.failing, self.failed = None, 0
        self._pass_failed = False

    def wait(self, error: BaseException, waker: Waker, seconds: float) -> None:
        """Wait `seconds` (a tick) after a pass that raised `error`: a cut-off mount's, or
        an OSError that did not fail the FAILED_PASSES - 1 passes before; else raise it
        again (told once with its traceback, then a line a pass)."""
        if not self.met(error):
            if not isinstance(error, OSError):
                raise error
            what = (type(error).__name__, error.errno, error.filename)
            self.failed = self.failed + 1 if what == self.failing else 1
            self.failing, self._pass_failed = what, True
            if self.failed >= FAILED_PASSES:
                raise error
            log.warning("a pass of the loop failed, trying again in %gs (%d of %d in a "
                        "row end the daemon): %s", seconds, self.failed, FAILED_PASSES,
                        error, exc_info=error if self.failed == 1 else None)
        waker.wait(seconds)

    def over(self) -> None:
        if self.since is not None:
            log.warning("the vault can be read again, after %.0f s", self.monotonic() - self.since)
            self.since = None


def needs_polling(path: Path, mountinfo: Path = mounts.MOUNTINFO) -> str | None:
    """What `path` is on when inotify cannot see other hosts' changes there, else None."""
    return mounts.shared_kind(path, mountinfo)


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_mtime_ns, st.st_ctime_ns


class Poller:
    """Polls folders on a thread of its own and pokes `waker` with what changed."""

    def __init__(self, waker: Waker, interval: Callable[[], float]):
        self.waker = waker
        self.interval = interval
        self._folders: tuple[Path, ...] = ()
        self._dirs: dict[Path, tuple[int, int, int]] = {}
        self._files: dict[Path, dict[str, tuple[int, int, int]]] = {}
        self._stop = threading.Event()
        self._mutex = threading.Lock()  # one pass at a time: the loop's and the thread's
        self._thread: threading.Thread | None = None

    def watch(self, root: Path, projects: Iterable[Path], extra: Iterable[Path] = ()) -> None:
        """Poll `root` and the `plans/`, `cron/`, `tickets/` of these project folders, and
        `extra` folders (`.modulatio/`: the config and the pause file are replaced there)."""
        self._folders = (root, *(p / sub for p in projects for sub in POLLED), *extra)
        self.poll()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="modulatio-poll",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval()):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the thread must outlive any surprise
                log.exception("polling failed; trying again at the next interval")

    def poll(self) -> list[str]:
        """One pass: the paths reported (for tests; the thread ignores them)."""
        with self._mutex:
            return self._poll()

    def _poll(self) -> list[str]:
        changed: list[str] = []
        folders = self._folders
        for gone in set(self._dirs) - set(folders):
            self._dirs.pop(gone, None)
            self._files.pop(gone, None)
        for folder in folders:
            try:
                sig = _signature(os.stat(folder))
            except OSError:
                continue  # not made yet, or the mount is cut off: next time
            if self._dirs.get(folder) == sig:
                continue
            first = folder not in self._dirs
            self._dirs[folder] = sig
            if folder.name != "plans":
                if not first:
                    changed.append(str(folder))
                    self.waker.poke(str(folder))
                continue
            files = self._scan(folder)
            if files is None:
                self._dirs.pop(folder, None)  # try the whole folder again next time
                continue
            old = self._files.get(folder, {})
            self._files[folder] = files
            if first:
                continue
            for name, s in files.items():
                if old.get(name) != s:
                    changed.append(str(folder / name))
                    self.waker.poke(str(folder / name))
        return changed

    @staticmethod
    def _scan(folder: Path) -> dict[str, tuple[int, int, int]] | None:
        files = {}
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.name.startswith(".") or not entry.name.endswith(".md"):
                        continue  # temp files of a save in progress, locks, .runs/
                    try:
                        files[entry.name] = _signature(entry.stat(follow_symlinks=False))
                    except OSError:
                        continue  # replaced or removed meanwhile (ESTALE): next time
        except OSError:
            return None
        return files

"""Waking the single-threaded daemon: file changes, signals, a child's exit.

`Waker` is a self-pipe. A change is told to it by `poke`, which queues the changed
file's path (or "" for another change) and writes a byte to the pipe: from the
daemon's own thread when it reads inotify (daemon/inotify.py, whose descriptor
the Waker reads when it waits or is asked what changed: `attach`), from
watchdog's threads where libc has no inotify calls, from the poller's thread on
a network file system; signals reach it through signal.set_wakeup_fd.
`wait(timeout, fds)` blocks until the pipe or one of `fds` (a child's pidfd) is
readable or the time is up.

While a step runs, the runner names its plan (`focused`): a change of any other
plan file is then queued but wakes nothing (with N daemons on one vault each
plan write would otherwise wake every running daemon into its between-beats
checks: N x N wake-ups a step, nothing for them to do). The first wait after the
step returns at once when such a change was held back, so the main loop takes it
as it would have.
inotify can drop events under load and watchdog's threads can die: the tick
stays the truth, and `Watcher.watch()` restarts a dead watcher.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from modulatio_d.daemon import inotify
from modulatio_d.store import slots
from modulatio_d.store.vault import META, Vault

log = logging.getLogger("modulatio.wake")
RELIST_S = 1.0
"""Watcher.due: the folders watched are listed again at least this often."""


class Waker:
    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._changed: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._mutex = threading.Lock()  # the focus and the held-back flag, across threads
        self._focus: str | None = None  # the file name a wait on a child cares about
        self._held = False  # a change was queued without a wake-up (see the docstring)
        self._source: inotify.Inotify | None = None  # see attach

    def attach(self, source: inotify.Inotify | None) -> None:
        """Read `source` on this thread: its `pump()` (which pokes for what it read) is
        called when its descriptor is readable during a wait, and before each
        take_changed. None detaches."""
        self._source = source

    def pump(self) -> None:
        """Take in what the attached source holds now (see attach)."""
        if self._source is not None:
            self._source.pump()

    def poke(self, path: str | None = None) -> None:
        """Wake the daemon; `path`, if given, is a file that changed (thread-safe). Without
        one, take_changed() says "" (something else changed: the config, a folder): a
        wake-up with nothing to take is a byte whose change was taken already, or a
        signal (its handler set a flag)."""
        self._changed.put("" if path is None else path)
        if path is not None:
            with self._mutex:
                if self._focus is not None and os.path.basename(path) != self._focus:
                    self._held = True
                    return
        try:
            os.write(self.w, b"x")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is pending already

    def take_changed(self) -> set[str]:
        """The files reported changed since the last call ("": something else, see poke)."""
        self.pump()
        out = set()
        while True:
            try:
                out.add(self._changed.get_nowait())
            except queue.Empty:
                return out

    @contextmanager
    def focused(self, plan: Path | str) -> Iterator[None]:
        """While in it, a change of a plan file other than `plan` wakes nothing."""
        with self._mutex:
            self._focus = os.path.basename(plan)
        try:
            yield
        finally:
            with self._mutex:
                self._focus = None

    def wait(self, timeout: float, fds: tuple[int, ...] = ()) -> bool:
        """Block up to `timeout` s; True when woken by the pipe or an fd. The attached
        descriptor's events are taken in as they come; those held back (`focused`)
        go on waiting."""
        with self._mutex:
            if self._focus is None and self._held:
                self._held = False
                return True  # changes held back while focused: to be taken now
        poller = select.poll()  # no descriptor of its own, unlike epoll: cheap per wait
        source = self._source.fd if self._source is not None else -1
        for fd in (self.r, *fds, *((source,) if source >= 0 else ())):
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            ready = [fd for fd, _ in poller.poll(
                max(0, math.ceil((deadline - time.monotonic()) * 1000)))]
            if ready == [source]:
                self.pump()  # its wake-ups (if any) are in the pipe now
                if time.monotonic() < deadline:
                    continue
                ready = [fd for fd, _ in poller.poll(0) if fd != source]
            self.drain()
            return bool(ready)

    def drain(self) -> None:
        try:
            while os.read(self.r, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


class Watcher:
    """inotify on the folders people write in; wakes the daemon on changes.

    Read on the daemon's thread when it waits or takes the changes (daemon/inotify.py:
    watchdog's three threads cost 0.3 ms of CPU an event, and every daemon sees every
    daemon's writes); watchdog where libc has no inotify calls.

    Each folder is watched on its own, not recursively: a vault holds a
    `<plan>.runs/` folder per plan that ever ran, and a recursive watch would
    spend one inotify watch on each (the kernel's per-user limit is finite) and
    wake the daemon on every line a step logs. `watch(folders)` is called each
    tick and adds the folders that appeared (a new project). A watcher that
    cannot start (the watch limit reached) is logged once: the tick still scans.
    """

    def __init__(self, waker: Waker, monotonic: Callable[[], float] = time.monotonic):
        self.waker = waker
        self.observer = None  # daemon/inotify.py's Inotify, else _Watchdog (its interface)
        self.watched: dict[Path, object] = {}
        self.broken = False
        self.monotonic = monotonic
        self._moved = True  # a folder made, moved or removed since the last watch()
        self._last = -math.inf  # when watch() last listed

    def due(self) -> bool:
        """Whether the folders are worth listing again (`watch`): a folder changed since
        the last listing (or the kernel's queue overflowed), or RELIST_S passed. Plans run
        back to back list the vault once a second at most, not once a plan."""
        self.waker.pump()  # a folder made before now is seen now, as a thread would have
        return self._moved or self.monotonic() - self._last >= RELIST_S

    def tell(self, path: str | None, is_folder: bool) -> None:
        """One changed path (None: the kernel's queue overflowed, anything may have
        changed). Runs on the daemon's thread (inotify) or watchdog's: no I/O but one
        pipe write, never raises."""
        folder = path is None or (is_folder and not _unwatched_folder(path))
        if folder:
            self._moved = True
        try:
            if path is None:
                self.waker.poke()
            elif path.endswith(".md"):
                self.waker.poke(path)  # a plan, cron entry or ticket
            elif folder or path.endswith(("config.yaml", "pause.yaml", "/slots/freed")):
                self.waker.poke()  # the config, a pause, a slot freed, a folder
        except Exception:
            pass

    def _start(self) -> None:
        try:
            self.observer = inotify.Inotify(self.tell)
            self.waker.attach(self.observer)
        except (OSError, AttributeError) as e:  # no inotify through libc: watchdog's way
            log.debug("inotify unavailable (%s): watchdog watches", e)
            self.observer = _Watchdog(self.tell)
        self.watched = {}

    def watch(self, folders: list[Path]) -> int:
        """Watch each of `folders` that exists; restart a dead watcher (watchdog's threads).

        Returns how many folders it started watching: a caller that listed the
        folders, then watched, then scanned should list again when this is not 0
        (a subfolder made in between was seen by no watch)."""
        added = 0
        self._moved, self._last = False, self.monotonic()  # a change from now on: due again
        if self.observer is not None and not self.observer.is_alive():
            log.warning("file watcher stopped; restarting it (the tick scan covers the gap)")
            self.observer = None
        try:
            if self.observer is None:
                self._start()
            wanted = set(folders)
            for gone in [f for f, h in self.watched.items()
                         if f not in wanted or not f.is_dir() or not self.observer.alive(h)]:
                # deleted (its inotify watch died with it) or no longer served: a folder
                # made again under the same name must get a new watch
                self.observer.remove(self.watched.pop(gone))
            for folder in folders:
                if folder not in self.watched and folder.is_dir():
                    self.watched[folder] = self.observer.add(str(folder))
                    added += 1
        except OSError as e:  # ENOSPC from inotify: the per-user watch limit
            if not self.broken:
                log.warning("file watcher unavailable (%s); changes are seen at the next tick",
                            e)
            self.broken = True
        return added

    def stop(self) -> None:
        self.waker.attach(None)
        if self.observer is not None:
            self.observer.stop()


class _Watchdog:
    """watchdog's Observer behind inotify.Inotify's interface, telling `tell` what it
    would (where libc gives no inotify calls)."""

    def __init__(self, tell: inotify.Tell):
        from watchdog.events import (
            DirCreatedEvent,
            DirMovedEvent,
            FileClosedEvent,
            FileCreatedEvent,
            FileDeletedEvent,
            FileMovedEvent,
            FileSystemEventHandler,
        )
        from watchdog.observers import Observer

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                for p in (event.src_path, getattr(event, "dest_path", "")):
                    if isinstance(p, bytes):
                        p = os.fsdecode(p)
                    if p:  # no dest_path: not a move
                        tell(p, event.is_directory)

        self.handler = Handler()
        # Asked of the kernel, not filtered here (as inotify.MASK): no reads, no IN_MODIFY.
        self.wanted = [FileCreatedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent,
                       DirCreatedEvent, DirMovedEvent]
        self.observer = Observer()
        self.observer.daemon = True
        self.observer.start()

    def add(self, folder: str) -> object:
        return self.observer.schedule(self.handler, folder, recursive=False,
                                      event_filter=self.wanted)

    def remove(self, handle: object) -> None:
        self.observer.unschedule(handle)

    def alive(self, handle: object) -> bool:
        return True  # watchdog does not say: a folder made again is seen by is_dir()

    def is_alive(self) -> bool:
        return self.observer.is_alive()

    def stop(self) -> None:
        logging.getLogger("watchdog.observers.inotify").addFilter(_stop_race)
        self.observer.stop()
        self.observer.join(timeout=5)


def _stop_race(record: logging.LogRecord) -> bool:
    # watchdog logs this at ERROR when its emitter thread wakes once more after stop():
    # harmless, and an ERROR line on a clean shutdown would send operators looking.
    return not record.getMessage().startswith("InotifyEmitter.queue_events() called when")


def _unwatched_folder(path: str) -> bool:
    """A folder made or removed that asks for no scan and no new watch: a plan's .runs/,
    and the daemons' own folders in `.modulatio/` (daemons/, state/, made at a vault's
    first beat and first claim: each cost every idle daemon a full scan), all but slots/."""
    return path.endswith(".runs") or (os.path.basename(os.path.dirname(path)) == META
                                      and os.path.basename(path) != slots.FOLDER)


def watched(vault: Vault, served: list[str]) -> list[Path]:
    """The folders people write in: the root, `.modulatio/` and its slots/, and each
    served project with its plans/, cron/ and tickets/ (not the .runs/ folders beside
    the plans). Not only projects: a folder made a moment ago becomes one when its
    plans/ appears, an event only a watch on the folder itself will see."""
    folders = [vault.root, vault.meta, slots.root(vault.meta)]
    for project in served:
        top = vault.project_dir(project)
        folders += [top, top / "plans", top / "cron", top / "tickets"]
    return folders

"""Waking the single-threaded daemon: file changes, signals, a child's exit.

`Waker` is a self-pipe. The watchdog observer thread only writes a byte to it
(and remembers nothing else: the scan compares stat signatures anyway);
signals reach it through signal.set_wakeup_fd. `wait(timeout, fds)` blocks
until the pipe or one of `fds` (a child's pidfd) is readable or the time is up.
inotify can drop events under load and the observer thread can die: the tick
stays the truth, and `Watcher.ensure()` restarts a dead observer.
"""

from __future__ import annotations

import logging
import math
import os
import select
import warnings
from pathlib import Path

log = logging.getLogger("modulatio.wake")


class Waker:
    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def poke(self) -> None:
        try:
            os.write(self.w, b"x")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is pending already

    def wait(self, timeout: float, fds: tuple[int, ...] = ()) -> bool:
        """Block up to `timeout` s; True when woken by the pipe or an fd."""
        poller = select.poll()  # no descriptor of its own, unlike epoll: cheap per wait
        for fd in (self.r, *fds):
            poller.register(fd, select.POLLIN)
        ready = poller.poll(max(0, math.ceil(timeout * 1000)))
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
    """watchdog (inotify) on the served folders; wakes the daemon on `.md` changes."""

    def __init__(self, folders: list[Path], waker: Waker):
        self.folders = folders
        self.waker = waker
        self.observer = None

    def start(self) -> None:
        from watchdog.events import (
            FileClosedEvent,
            FileCreatedEvent,
            FileDeletedEvent,
            FileModifiedEvent,
            FileMovedEvent,
            FileSystemEventHandler,
        )
        from watchdog.observers import Observer

        # watchdog 7 warns when a folder made under a recursive watch (our own
        # .modulatio/state/<P>, say) is added twice; the watch is right either way.
        warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)
        waker = self.waker

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                # Runs on the observer thread: no I/O but one pipe write, and never raise.
                try:
                    for p in (event.src_path, getattr(event, "dest_path", "")):
                        if isinstance(p, bytes):
                            p = os.fsdecode(p)
                        if p.endswith(".md") or p.endswith("config.yaml"):
                            waker.poke()
                            return
                except Exception:
                    pass

        self.observer = Observer()
        handler = Handler()
        wanted = [FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent,
                  FileClosedEvent]
        for folder in self.folders:
            if folder.is_dir():
                self.observer.schedule(handler, str(folder), recursive=True, event_filter=wanted)
        self.observer.daemon = True
        self.observer.start()

    def ensure(self) -> None:
        """Restart the observer if its thread died (an exception kills it silently)."""
        if self.observer is not None and not self.observer.is_alive():
            log.warning("file watcher stopped; restarting it (the tick scan covers the gap)")
            self.start()

    def stop(self) -> None:
        if self.observer is not None:
            logging.getLogger("watchdog.observers.inotify").addFilter(_stop_race)
            self.observer.stop()
            self.observer.join(timeout=5)


def _stop_race(record: logging.LogRecord) -> bool:
    # watchdog logs this at ERROR when its emitter thread wakes once more after stop():
    # harmless, and an ERROR line on a clean shutdown would send operators looking.
    return not record.getMessage().startswith("InotifyEmitter.queue_events() called when")

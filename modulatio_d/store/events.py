"""The audit log `.modulatio/events.jsonl`: one JSON line per transition.

Every line is written by one os.write on a descriptor opened with O_APPEND,
so lines from several daemons never interleave. Fields: `ts` (UTC), `event`,
`host`, `pid`, then the event's own (plan, project, index, attempt, ...).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from modulatio_d.core.times import format_time, utcnow

log = logging.getLogger("modulatio.events")


class EventLog:
    def __init__(self, path: Path, clock: Callable[[], datetime] = utcnow):
        self.path = path
        self.clock = clock
        self.host = socket.gethostname()
        self.pid = os.getpid()

    def __call__(self, event: str, **fields: object) -> None:
        line = {"ts": format_time(self.clock()), "event": event, "host": self.host,
                "pid": self.pid, **fields}
        data = (json.dumps(line, default=str, sort_keys=False) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as e:  # disk full, say: the audit line is lost, the work goes on
            log.warning("could not append to %s (%s): %s", self.path, e.strerror, line)


def read(path: Path, names: tuple[str, ...] = ()) -> list[dict]:
    """The log's well-formed lines, oldest first; with `names`, only those events."""
    return read_counted(path, names)[0]


_ANY_EVENT = re.compile(rb'"event"\s*:')


def read_counted(path: Path, names: tuple[str, ...] = ()) -> tuple[list[dict], int]:
    """(the log's well-formed lines, how many lines are unreadable), oldest first.

    The log only grows (rotate it by renaming: every writer opens it with
    O_APPEND per line), so it is read whole; with `names`, a regex on the raw
    line skips other events before any JSON is decoded. Unreadable lines are
    skipped and counted: not JSON, not an object, or not even naming an event
    (a line skipped by the regex is decoded only when it matches, so a broken
    line of an event not asked for counts only when it names no event at all).
    A torn last line (a daemon writing it now) is skipped without counting.
    """
    wanted = re.compile(rb'"event"\s*:\s*"(?:' + b"|".join(re.escape(n.encode()) for n in names)
                        + rb')"') if names else None
    out = []
    bad = 0
    try:
        with open(path, "rb") as f:
            for line in f:
                # Blank lines are no loss; the last line, without its newline, may be
                # a daemon's write in progress.
                counts = bool(line.strip()) and line.endswith(b"\n")
                if wanted is not None and wanted.search(line) is None:
                    bad += counts and _ANY_EVENT.search(line) is None
                    continue
                try:
                    event = json.loads(line)
                except (ValueError, RecursionError):  # RecursionError: [[[[... nested deep
                    bad += counts
                    continue
                if isinstance(event, dict) and (not names or event.get("event") in names):
                    out.append(event)
                elif not isinstance(event, dict):
                    bad += 1
    except FileNotFoundError:
        pass
    return out, bad

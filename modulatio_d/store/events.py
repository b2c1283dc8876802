"""The audit log `.modulatio/events.jsonl`: one JSON line per transition.

Every line is written by one os.write on a descriptor opened with O_APPEND,
under an flock of the file (store/fs/ append): lines from several daemons never
interleave, on one host or across the hosts of a network filesystem, where
O_APPEND alone tore lines. The file is opened through
store/fs/: a link (to a person's ~/.bashrc, say) is refused, never written
through, and so is anything but a regular file with one link. Fields: `ts` (UTC), `event`,
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
from modulatio_d.store import fs

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
            fs.append(self.path, data)
        except fs.Refused as e:  # a planted link: told, never written through
            log.warning("event not recorded: %s: %s", e, line)
        except OSError as e:  # disk full, say: the audit line is lost, the work goes on
            log.warning("could not append to %s (%s): %s", self.path, e.strerror, line)


def read(path: Path, names: tuple[str, ...] = ()) -> list[dict]:
    """The log's well-formed lines, oldest first; with `names`, only those events."""
    return read_counted(path, names)[0]


_ANY_EVENT = re.compile(rb'"event"\s*:')


def read_counted(path: Path, names: tuple[str, ...] = ()) -> tuple[list[dict], int]:
    """(the log's well-formed lines, how many lines are unreadable), oldest first.

    The log only grows (rotate it by renaming: every writer opens it with
    O_APPEND per line); it is read line by line up to its size when opened, a
    line over 64 KiB skipped unread; with `names`, a regex on the raw line skips
    other events before any JSON is decoded. Unreadable lines are skipped and
    counted: over the limit, not JSON, not an object, or not even naming an
    event (a line skipped by the regex is decoded only when it matches, so a
    broken line of an event not asked for counts only when it names no event at
    all). The last line is never counted: it may be a daemon's write in
    progress. A log that is a link or not a regular file reads as empty.
    """
    wanted = re.compile(rb'"event"\s*:\s*"(?:' + b"|".join(re.escape(n.encode()) for n in names)
                        + rb')"') if names else None
    out = []
    bad = 0
    try:
        pending = 0  # the latest line's badness: counted once another line follows it
        for _, line in fs.lines(path, "event line"):
            bad, pending = bad + pending, 0
            if line is None:
                pending = 1  # over the limit, skipped unread
                continue
            if wanted is not None and wanted.search(line) is None:
                pending = int(bool(line.strip()) and _ANY_EVENT.search(line) is None)
                continue
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: [[[[... nested deep
                pending = int(bool(line.strip()))
                continue
            if isinstance(event, dict) and (not names or event.get("event") in names):
                out.append(event)
            elif not isinstance(event, dict):
                pending = 1
    except FileNotFoundError:
        pass
    except fs.Refused as e:
        log.warning("events not read: %s", e)
    return out, bad

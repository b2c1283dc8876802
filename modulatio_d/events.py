"""The audit log `.modulatio/events.jsonl`: one JSON line per transition.

Every line is written by one os.write on a descriptor opened with O_APPEND,
so lines from several daemons never interleave. Fields: `ts` (UTC), `event`,
`host`, `pid`, then the event's own (plan, project, index, attempt, ...).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from modulatio_d.document import format_time

log = logging.getLogger("modulatio.events")


def utcnow() -> datetime:
    return datetime.now(UTC)


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


def read(path: Path) -> list[dict]:
    """Every well-formed line of the log (a torn last line is skipped)."""
    out = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out

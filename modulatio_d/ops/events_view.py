"""`modulatio events`: events.jsonl as one readable line per event, past and live.

What is read (store/logtail.py): `--last N` reads blocks from the end until N
matching lines are found; `--since T` bisects the file on the lines' `ts` and
reads from there; neither reads the file from its start. `--follow` goes on
from the end as it was when the history was read (no line between the two is
lost or shown twice) and follows the log across a rotation (a rename).
Filters look at the raw line first (a plan id or event name not in it: the
line is not decoded), then at the decoded fields. A line that is not a JSON
object is passed over.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from modulatio_d.core.checks import parse_duration
from modulatio_d.core.times import parse_time
from modulatio_d.store.logtail import FOLLOW_POLL_S, Tail

_TS = re.compile(rb'"ts"\s*:\s*"([^"]+)"')
FIRST = ("ts", "event", "host", "pid", "project", "plan", "index", "attempt")


@dataclass(frozen=True)
class Filter:
    types: tuple[str, ...] = ()
    plan: str | None = None
    project: str | None = None

    def match(self, raw: bytes) -> dict | None:
        if self.plan and self.plan.encode() not in raw:
            return None
        if self.types and not any(t.encode() in raw for t in self.types):
            return None
        try:
            event = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        if not isinstance(event, dict):
            return None
        if self.types and event.get("event") not in self.types:
            return None
        if self.plan and event.get("plan") != self.plan:
            return None
        if self.project and event.get("project") != self.project:
            return None
        return event


def parse_since(text: str, now: datetime) -> datetime:
    """An ISO time (naive: UTC) or an age before `now` (30m, 2h, 1d); ValueError."""
    when = parse_time(text.strip())
    if when is not None:
        return when
    try:
        return now - timedelta(seconds=parse_duration(text.strip()))
    except ValueError:
        raise ValueError(f"--since {text!r}: give an ISO time (2026-12-02T10:00:00Z) or an "
                         f"age (90s, 30m, 2h, 1d)") from None


def _ts(raw: bytes) -> datetime | None:
    m = _TS.search(raw)
    return parse_time(m.group(1).decode("ascii", "replace")) if m else None


class Events:
    """The log as one `Tail`, read once for the history, then followed."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.tail: Tail | None = Tail(path)
        except FileNotFoundError:
            self.tail = None  # no event yet: the history is empty, a follower waits

    def history(self, f: Filter, since: datetime | None, last: int | None
                ) -> Iterator[tuple[dict, str]]:
        if self.tail is None:
            return
        if since is not None:
            start = self.tail.seek(_ts, since)
            for raw in self.tail.forward(start):
                event = f.match(raw)
                if event is not None:
                    yield event, raw.decode("utf-8", "replace")
            return
        if not last:
            return
        found: list[tuple[dict, bytes]] = []
        for raw in self.tail.backwards():
            event = f.match(raw)
            if event is not None:
                found.append((event, raw))
                if len(found) >= last:
                    break
        for event, raw in reversed(found):
            yield event, raw.decode("utf-8", "replace")

    def follow(self, f: Filter) -> Iterator[tuple[dict, str]]:
        while self.tail is None:
            time.sleep(FOLLOW_POLL_S)
            try:
                self.tail = Tail(self.path)
                self.tail.end = 0  # made after we looked: every line of it is new
            except FileNotFoundError:
                continue
        for raw in self.tail.follow():
            event = f.match(raw)
            if event is not None:
                yield event, raw.decode("utf-8", "replace")

    def close(self) -> None:
        if self.tail is not None:
            self.tail.close()


def one_line(e: dict) -> str:
    """`2026-12-02T10:00:00Z step_started P/P-P-001 step 2 attempt 1 host.pid k=v ...`"""
    where = "/".join(str(e[k]) for k in ("project", "plan") if e.get(k) is not None)
    parts = [str(e.get("ts", "?")), str(e.get("event", "?"))]
    if where:
        parts.append(where)
    if isinstance(e.get("index"), int):
        parts.append(f"step {e['index'] + 1}")
    if e.get("attempt") is not None:
        parts.append(f"attempt {e['attempt']}")
    parts.append(f"{e.get('host', '?')}.{e.get('pid', '?')}")
    for k, v in e.items():
        if k in FIRST:
            continue
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        parts.append(f"{k}={text}")
    return " ".join(parts)

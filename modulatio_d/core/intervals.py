"""Interval schedules and jitter of cron entries: pure, no clock (core/cron.py uses them).

An interval schedule `every: 90m` from a start time is held as the text
`@every <seconds> <start as Unix seconds>`; its instants are start + k * every
for k >= 0: absolute instants, which no time zone or DST moves.

Jitter: the instant t of entry E fires at t + a whole number of seconds in
[0, jitter), taken from sha256(E, t): every daemon on every host computes the
same moment, and the kickoff id stays the one of t.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

EVERY = re.compile(r"@every (\d+) (-?\d+)\Z")
MIN_EVERY_S = 60
"""The shortest interval: kickoffs are plans, not a busy loop."""


def is_every(expr: str) -> bool:
    return EVERY.fullmatch(expr) is not None


def every_expr(seconds: float, start: datetime) -> str:
    """The schedule text of an interval of `seconds` from `start`, or ValueError."""
    if seconds < MIN_EVERY_S or seconds != int(seconds):
        raise ValueError(f"every must be whole seconds, at least {MIN_EVERY_S} s (1m)")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("the start of an interval needs a time zone")
    return f"@every {int(seconds)} {int(start.astimezone(UTC).timestamp())}"


def parts(expr: str) -> tuple[int, datetime]:
    m = EVERY.fullmatch(expr)
    assert m is not None
    return int(m.group(1)), datetime.fromtimestamp(int(m.group(2)), UTC)


def forward(expr: str, after: datetime) -> Iterator[datetime]:
    """Instants strictly after `after`, increasing."""
    step, start = parts(expr)
    k = max(0, (after.astimezone(UTC) - start) // timedelta(seconds=step) + 1)
    while True:
        try:
            yield start + timedelta(seconds=step * k)
        except OverflowError:
            return
        k += 1


def backward(expr: str, after: datetime, until: datetime) -> Iterator[datetime]:
    """Instants in (after, until], decreasing."""
    step, start = parts(expr)
    k = (until.astimezone(UTC) - start) // timedelta(seconds=step)
    while k >= 0:
        t = start + timedelta(seconds=step * k)
        if t <= after:
            return
        yield t
        k -= 1


def jitter_of(cron_id: str, scheduled: datetime, jitter_s: float) -> timedelta:
    """The delay of one scheduled instant: whole seconds in [0, jitter_s)."""
    if jitter_s <= 0:
        return timedelta(0)
    seed = f"{cron_id}@{scheduled.astimezone(UTC).isoformat()}".encode()
    frac = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") / 2 ** 64
    return timedelta(seconds=int(frac * jitter_s))

"""What the daemon lends each run of a plan (runner.py and its parts).

One object instead of a dozen arguments. The clocks are injected (the wall
clock for what is written, the monotonic one for timeouts, hold-offs and
patience), so tests drive time instead of waiting for it. The config is the
one in force when the plan was claimed; a run does not see a later change.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from modulatio_d.core.plan import Plan, SubObjective
from modulatio_d.store.config import Config
from modulatio_d.store.slots import Held


@dataclass
class Stop:
    """Set by the daemon's signal handlers: 1 = stop the step and exit, 2 = at once.

    `drain` (SIGUSR2, sent by a pool's supervisor that shrinks): let the running step
    finish, start no other, and exit; the plan stays `executing` at the next index."""

    requested: int = 0
    drain: bool = False

    def ending(self) -> bool:
        """Start nothing new: a stop or a drain was asked."""
        return self.requested > 0 or self.drain


@dataclass(frozen=True)
class Clocks:
    wall: Callable[[], datetime]
    """Now, for what is written (timestamps, ages of files)."""
    monotonic: Callable[[], float]
    """Seconds that never jump, for timeouts, hold-offs and patience."""


class Wait(Protocol):
    """daemon/wake.py's Waker as a run uses it."""

    def wait(self, timeout: float, fds: tuple[int, ...] = ()) -> bool: ...
    def focused(self, plan: Path | str) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class Services:
    config: Config
    events: Callable[..., None]
    """The event sink (store/events.py EventLog): events(kind, **fields)."""
    waker: Wait
    stop: Stop
    clocks: Clocks
    periodic: Callable[[Plan | None, SubObjective | None], None]
    """Called as a step starts and while it runs or a write waits: heartbeat, cron."""
    base_env: dict[str, str]
    """What a step's environment starts from (the daemon's, minus sd_notify's)."""
    tick_seconds: float
    halt: Callable[[], str | None] = lambda: None
    """Whether the run must leave, the daemon going on: None, "drain" (at the next step
    boundary) or "now" (stop the running step as SIGTERM would, in flight, to run
    again): a pause (daemon/admission.py). The runner asks it where it asks
    `stop.ending()` (a stop, or a pool's drain): one mechanism, the same boundary."""
    slots: Held | None = None
    """The slots held for the run besides the plan's lock (store/slots.py): passed to
    each step's child, and checked like the lock at each boundary and beat."""

    beat_due: Callable[[], float | None] = lambda: None
    """The monotonic time by which `periodic` must be called again (a new step's beat
    held back, at most a beat a second), or None."""

    def beat_interval(self) -> float:
        """The longest a run waits without calling `periodic`: the beat interval, or less
        when a beat is due sooner (`beat_due`)."""
        interval = max(0.5, min(15.0, self.tick_seconds / 2))
        due = self.beat_due()
        if due is not None:
            interval = min(interval, max(0.0, due - self.clocks.monotonic()))
        return interval

    def hurry(self) -> bool:
        return self.stop.requested > 1  # a second signal: no more grace for the step

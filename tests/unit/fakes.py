"""A clock that moves only when told, and a wake-up pipe whose waits take no time.

With these a daemon's timeouts, hold-offs and patience are tested in
microseconds: a wait moves the clock by what was asked, and nothing sleeps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from modulatio_d.daemon.services import Clocks, Services, Stop
from modulatio_d.store.config import Config

WALL0 = datetime(2025, 11, 4, 10, 0, tzinfo=UTC)


class FakeClock:
    """Monotonic seconds and a wall clock that keep in step, and move only when told."""

    def __init__(self, wall: datetime = WALL0, monotonic: float = 1000.0):
        self.wall0, self.mono0, self.mono = wall, monotonic, monotonic

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> datetime:
        return self.wall0 + timedelta(seconds=self.mono - self.mono0)

    def advance(self, seconds: float) -> None:
        self.mono += seconds

    sleep = advance

    def clocks(self) -> Clocks:
        return Clocks(self.wall, self.monotonic)


class FakeWaker:
    """daemon/wake.py's Waker that is never woken: each wait lasts its whole timeout."""

    def __init__(self, clock: FakeClock, on_wait: Callable[[], None] = lambda: None):
        self.clock = clock
        self.on_wait = on_wait
        self.waits: list[float] = []

    def focused(self, plan):
        return contextlib.nullcontext()

    def wait(self, timeout: float, fds: tuple[int, ...] = ()) -> bool:
        self.waits.append(timeout)
        self.clock.advance(max(0.0, timeout))
        self.on_wait()
        return False


class Events(list):
    """An event sink that keeps (kind, fields)."""

    def __bool__(self) -> bool:
        return True  # empty, it is still a sink: callers write `events or a_default`

    def __call__(self, event: str, /, **fields: object) -> None:
        self.append((event, fields))

    def kinds(self) -> list[str]:
        return [k for k, _ in self]


def services(clock: FakeClock, tick_seconds: float = 2.0, **kw) -> Services:
    """What a daemon lends a run, with fakes: kw replaces any field."""
    fields = {"config": Config(), "events": Events(), "waker": FakeWaker(clock),
              "stop": Stop(), "clocks": clock.clocks(), "periodic": lambda plan, step: None,
              "base_env": {}, "tick_seconds": tick_seconds}
    fields.update(kw)
    return Services(**fields)


def failing_updates(monkeypatch, target: object, errors: list[Exception | None]) -> list[dict]:
    """Make `target.update` (the HeldPlan class, or one HeldPlan) raise the next of `errors`
    at each call (None: that call writes) and write once they are used up; returns the
    changes it was asked to write."""
    real, calls = target.update, []

    def update(*args):  # (self, changes) on the class, (changes) on one plan
        calls.append(args[-1])
        if errors:
            error = errors.pop(0)
            if error is not None:
                raise error
        return real(*args)
    monkeypatch.setattr(target, "update", update)
    return calls


def plan_text(steps: list[str], status: str = "approved", extra: str = "") -> str:
    lines = ["id: P-P-001", "title: A plan", f"status: {status}", "priority: 50",
             "sub_objectives:", *[f"  - {s}" for s in steps], *extra.splitlines(),
             "current_index: 0", "reflection_log: []"]
    return "---\n" + "\n".join(lines) + "\n---\nThe body.\n"


def write_plan(vault, steps: list[str], status: str = "approved", extra: str = "",
               plan_id: str = "P-P-001") -> Path:
    path = vault.plan_path("P", plan_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plan_text(steps, status, extra).replace("P-P-001", plan_id))
    return path

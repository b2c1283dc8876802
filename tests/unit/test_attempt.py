"""One attempt's wait loop and its decisions, on a fake clock: timeouts, stop requests,
a person's abort, a child that exits; and the reflection_log entry built for it."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from fakes import FakeClock, FakeWaker, services, write_plan

from modulatio_d.core.errors import StepError
from modulatio_d.core.plan import StepKind, SubObjective
from modulatio_d.core.verdict import Decision, Outcome
from modulatio_d.daemon import attempt
from modulatio_d.daemon.attempt import KILL_GRACE_S, Attempt, reflection_entry, watch
from modulatio_d.daemon.executors import StepContext
from modulatio_d.store.config import Config
from modulatio_d.store.plan_file import read_plan


class FakeChild:
    """A step that exits at monotonic time `exits_at` (never: None) with `code`."""

    def __init__(self, clock: FakeClock, exits_at: float | None = None, code: int = 0):
        self.clock, self.exits_at, self.code = clock, exits_at, code
        self.stopped: tuple[float, bool] | None = None  # (grace, hurried)
        self.killed: list[int] = []
        self.closed = False
        self.proc = self

    def poll(self) -> int | None:
        if self.stopped:
            return -signal.SIGTERM
        if self.exits_at is not None and self.clock.monotonic() >= self.exits_at:
            return self.code
        return None

    def wait(self) -> int:
        code = self.poll()
        assert code is not None, "waited on a child that was neither stopped nor done"
        return code

    def wait_fd(self) -> int | None:
        return None

    def stop(self, grace: float, hurry) -> int:
        self.stopped = (grace, hurry())
        return -signal.SIGTERM

    def kill_group(self, sig: int) -> None:
        self.killed.append(sig)

    def close(self) -> None:
        self.closed = True


def test_a_step_past_its_timeout_is_stopped_with_the_grace(tmp_path):
    clock = FakeClock()
    svc = services(clock, tick_seconds=4.0)  # a beat every 2 s
    child, between = FakeChild(clock), []
    out = watch(child, clock.monotonic() + 10, svc, lambda: between.append(1) or False)
    assert out is Outcome.TIMEOUT
    assert child.stopped == (KILL_GRACE_S, False)
    assert svc.waker.waits == [2.0] * 5  # woke every beat: heartbeat and re-read between
    assert len(between) == 5


def test_a_timeout_shorter_than_a_beat_is_waited_for_exactly():
    clock = FakeClock()
    svc = services(clock, tick_seconds=60.0)
    child = FakeChild(clock)
    assert watch(child, clock.monotonic() + 0.3, svc, lambda: False) is Outcome.TIMEOUT
    assert svc.waker.waits == [pytest.approx(0.3)]


def test_a_beat_held_back_ends_the_wait_when_it_is_due():
    """A new step's beat held back (at most a beat a second) is told when due, not at
    the next file change (a running step's wait is woken by its own plan only)."""
    clock = FakeClock()
    due = [clock.monotonic() + 0.4]
    svc = services(clock, tick_seconds=60.0, beat_due=lambda: due[0])
    child = FakeChild(clock, exits_at=clock.monotonic() + 5)

    def between():
        due[0] = None  # periodic told it
        return None

    assert watch(child, clock.monotonic() + 100, svc, between) is None
    assert svc.waker.waits[0] == pytest.approx(0.4)  # then the beat interval again
    assert svc.waker.waits[1] == pytest.approx(15.0)


def test_a_child_that_exits_in_time_is_not_stopped():
    clock = FakeClock()
    svc = services(clock, tick_seconds=4.0)
    child = FakeChild(clock, exits_at=clock.monotonic() + 3)
    assert watch(child, clock.monotonic() + 10, svc, lambda: False) is None
    assert child.stopped is None and clock.monotonic() == 1004.0


def test_time_already_spent_counts_against_the_timeout():
    """The deadline is fixed before the launch: a slow start does not buy more time."""
    clock = FakeClock()
    svc = services(clock, tick_seconds=60.0)
    deadline = clock.monotonic() + 10
    clock.advance(10)
    child = FakeChild(clock)
    assert watch(child, deadline, svc, lambda: False) is Outcome.TIMEOUT
    assert svc.waker.waits == []


@pytest.mark.parametrize("signals, hurried", [(1, False), (2, True)])
def test_a_stop_request_interrupts_the_step(signals, hurried):
    clock = FakeClock()
    svc = services(clock)
    svc = services(clock, waker=FakeWaker(clock, on_wait=lambda: setattr(
        svc.stop, "requested", signals)), stop=svc.stop)
    child, between = FakeChild(clock), []
    out = watch(child, clock.monotonic() + 100, svc, lambda: between.append(1) or False)
    assert out is Outcome.INTERRUPTED
    assert child.stopped == (KILL_GRACE_S, hurried)  # a second signal: no grace
    assert between == []  # the plan is not looked at again: it stays in flight


def test_a_persons_abort_seen_between_waits_stops_the_step():
    clock = FakeClock()
    svc = services(clock, tick_seconds=4.0)
    child = FakeChild(clock)
    aborted_at = clock.monotonic() + 5
    out = watch(child, clock.monotonic() + 100, svc, lambda: clock.monotonic() >= aborted_at)
    assert out is Outcome.ABORTED
    assert child.stopped == (KILL_GRACE_S, False)
    assert clock.monotonic() == aborted_at + 1  # seen at the first beat after it


def test_a_lost_lock_seen_between_waits_interrupts_the_step():
    clock = FakeClock()
    svc = services(clock, tick_seconds=4.0)
    child = FakeChild(clock)
    lost_at = clock.monotonic() + 3
    out = watch(child, clock.monotonic() + 100, svc,
                lambda: Outcome.INTERRUPTED if clock.monotonic() >= lost_at else None)
    assert out is Outcome.INTERRUPTED  # left in flight, as on SIGTERM
    assert child.stopped == (KILL_GRACE_S, False)


def test_a_child_that_exits_during_the_last_wait_is_not_called_aborted():
    clock = FakeClock()
    svc = services(clock, tick_seconds=4.0)
    child = FakeChild(clock, exits_at=clock.monotonic() + 2)
    assert watch(child, clock.monotonic() + 100, svc, lambda: True) is None
    assert child.stopped is None


# --- a whole attempt, with the child faked -------------------------------------------


@pytest.fixture
def ctx(vault):
    path = write_plan(vault, ["{run: sleep 100}", "{run: sleep 100, timeout: 7}"])
    plan = read_plan(vault, path).plan
    runs = path.with_suffix(".runs")

    def make(index: int, config: Config | None = None) -> StepContext:
        return StepContext(vault.root, "P", plan, plan.sub_objectives[index], 1, 1,
                           runs / f"{index}-1.usage.jsonl", config or Config(), {})
    return make


def fake_children(monkeypatch, clock, **kw) -> list[FakeChild]:
    made: list[FakeChild] = []

    def child(launch, log_path, stdio, keep_fds=(), monotonic=None):
        assert monotonic == clock.monotonic  # the injected clock reaches the child's grace
        made.append(FakeChild(clock, **kw))
        return made[-1]
    monkeypatch.setattr(attempt, "Child", child)
    return made


def test_an_attempt_past_the_configured_default_timeout(ctx, monkeypatch):
    clock = FakeClock()
    made = fake_children(monkeypatch, clock)
    c = ctx(0, Config(default_timeout=30))
    log_path = c.usage_file.with_name("0-1.log")
    started = clock.wall()
    done = attempt.run(c, log_path, (), started, services(clock, tick_seconds=60),
                       lambda: False)
    assert done.outcome is Outcome.TIMEOUT
    assert done.exit == "timed out after 30s (signal 15 (SIGTERM))"
    assert (done.started, done.ended) == (started, started + timedelta(seconds=30))
    assert made[0].killed == [signal.SIGKILL] and made[0].closed  # leftovers go too


def test_an_attempt_uses_the_steps_own_timeout(ctx, monkeypatch):
    clock = FakeClock()
    fake_children(monkeypatch, clock)
    c = ctx(1, Config(default_timeout=30))
    done = attempt.run(c, c.usage_file.with_name("1-1.log"), (), clock.wall(),
                       services(clock, tick_seconds=60), lambda: False)
    assert done.exit == "timed out after 7s (signal 15 (SIGTERM))"


@pytest.mark.parametrize("code, outcome, text", [(0, Outcome.OK, "exit 0"),
                                                 (3, Outcome.FAILED, "exit 3"),
                                                 (-9, Outcome.FAILED, "signal 9 (SIGKILL)")])
def test_an_attempt_that_ends_on_its_own(ctx, monkeypatch, code, outcome, text):
    clock = FakeClock()
    fake_children(monkeypatch, clock, exits_at=clock.monotonic() + 1, code=code)
    c = ctx(0)
    done = attempt.run(c, c.usage_file.with_name("0-1.log"), (), clock.wall(),
                       services(clock), lambda: False)
    assert (done.outcome, done.exit) == (outcome, text)


def test_a_step_that_cannot_start_is_an_error_with_its_reason_in_the_log(ctx, monkeypatch):
    def refuse(ctx):
        raise StepError("no agent named x")
    monkeypatch.setattr(attempt, "launch", refuse)
    clock = FakeClock()
    c = ctx(0)
    log_path = c.usage_file.with_name("0-1.log")
    done = attempt.run(c, log_path, (), clock.wall(), services(clock), lambda: False)
    assert (done.outcome, done.exit, done.summary) == (Outcome.ERROR, "not started",
                                                        "no agent named x")
    assert log_path.read_text() == "modulatio: could not start the step: no agent named x\n"


def test_the_reflection_entry_of_an_attempt(tmp_path):
    clock = FakeClock()
    step = SubObjective(index=2, title="Publish", kind=StepKind.RUN, run="x")
    done = Attempt(Outcome.FAILED, "exit 1", clock.wall(),
                   clock.wall() + timedelta(seconds=1.23456), tmp_path / "P.runs" / "2-3.log",
                   "last line")
    entry = reflection_entry(step, 3, done, Decision.RETRY, 7, tmp_path)
    assert entry == {"index": 2, "title": "Publish", "attempt": 3, "outcome": "failed",
                     "exit": "exit 1", "started_at": "2025-11-04T10:00:00Z",
                     "ended_at": "2025-11-04T10:00:01Z", "duration_s": 1.235,
                     "decision": "retry", "summary": "last line", "log": "P.runs/2-3.log",
                     "token": 7}
    assert list(entry) == ["index", "title", "attempt", "outcome", "exit", "started_at",
                           "ended_at", "duration_s", "decision", "summary", "log", "token"]
    assert reflection_entry(step, 3, done, None, 7, tmp_path)["decision"] is None

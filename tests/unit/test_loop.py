"""The daemon's loop on a fake clock: a plan whose writes fail (disk full) is let go and
held off BACKOFF_TICKS ticks, whether the claim or a later write failed, without the
daemon dying or waiting for real."""

from __future__ import annotations

import errno

import pytest
from fakes import FakeClock, FakeWaker, failing_updates, write_plan

from modulatio_d.daemon.loop import BACKOFF_TICKS, Daemon
from modulatio_d.daemon.writeback import WRITE_RETRY_TICKS
from modulatio_d.store.events import read
from modulatio_d.store.lock import is_held, lock_path
from modulatio_d.store.plan_file import HeldPlan, read_plan

TICK = 1.0
FULL = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def daemon(vault, clock):
    d = Daemon(vault, [], TICK, True, clock.wall, {}, monotonic=clock.monotonic)
    real, d.waker = d.waker, FakeWaker(clock)  # the runner's waits take no time
    yield d
    real.close()


def offered(daemon, clock) -> list:
    return [c.path for c in daemon.scanner.scan(clock.wall())]


def test_a_claim_that_cannot_be_written_holds_the_plan_off(vault, daemon, clock, monkeypatch):
    path = write_plan(vault, ["one"])
    failing_updates(monkeypatch, HeldPlan, [FULL])
    assert daemon._claim_and_run(daemon.scanner.scan(clock.wall())) is False
    assert not is_held(lock_path(path))
    clock.advance(BACKOFF_TICKS * TICK - 0.5)
    assert offered(daemon, clock) == []
    clock.advance(0.5)
    assert offered(daemon, clock) == [path]


def test_a_run_whose_writes_keep_failing_is_let_go_and_held_off(vault, daemon, clock,
                                                                 monkeypatch):
    # A step that must not re-run after a crash: the claim cannot write it in flight
    # ahead (daemon/claim.first_in_flight), so its in_flight is a write of its own.
    path = write_plan(vault, ["{run: 'true', rerun_after_crash: false}"])
    # The claim lands, the in_flight write does not, ever.
    failing_updates(monkeypatch, HeldPlan, [None, *[FULL] * 1000])
    start = clock.monotonic()
    assert daemon._claim_and_run(daemon.scanner.scan(clock.wall())) is True
    patience = WRITE_RETRY_TICKS * TICK
    assert patience < clock.monotonic() - start <= patience + 0.5  # tried a beat at a time
    assert not is_held(lock_path(path))
    assert read_plan(vault, path).plan.status.value == "executing"  # for a later claim
    (left,) = [e for e in read(vault.events_path) if e["event"] == "plan_left"]
    assert left["retry_in_s"] == BACKOFF_TICKS * TICK
    assert "No space left on device" in left["reason"]
    clock.advance(BACKOFF_TICKS * TICK - 0.5)
    assert offered(daemon, clock) == []  # an orphan with a free lock, yet held off
    clock.advance(0.5)
    assert offered(daemon, clock) == [path]


def test_temp_files_left_by_kills_are_swept_at_the_first_tick_and_then_every_ten_minutes(
        vault, daemon, clock):
    import os

    from modulatio_d.store import tempfiles

    plans = vault.plans_dir("P")
    plans.mkdir(parents=True)

    def leftover(name: str):
        path = plans / name
        path.write_text("a killed writer's")
        old = clock.wall().timestamp() - tempfiles.MAX_AGE_S - 1
        os.utime(path, (old, old))
        return path

    first, person = leftover(".P-P-001.md.abcd1234.tmp"), leftover(".P-P-001.md.swp")
    daemon._sweep(clock.wall())
    assert not first.exists() and person.exists()
    second = leftover(".P-P-002.md.abcd1234.tmp")
    clock.advance(tempfiles.SWEEP_EVERY_S - 1)
    daemon._sweep(clock.wall())
    assert second.exists()  # not yet
    clock.advance(1)
    daemon._sweep(clock.wall())
    assert not second.exists() and person.exists()


def test_a_one_step_plan_takes_two_plan_writes_and_ends_as_before(vault, daemon, clock,
                                                                   monkeypatch):
    path = write_plan(vault, ["{run: 'true'}"])
    writes = failing_updates(monkeypatch, HeldPlan, [])
    assert daemon._claim_and_run(daemon.scanner.scan(clock.wall())) is True
    # The claim carries the first step's in_flight; the step's result carries the end.
    assert len(writes) == 2
    assert writes[0]["in_flight"]["index"] == 0 and writes[0]["in_flight"]["attempt"] == 1
    assert writes[1]["status"] == "completed" and writes[1]["claim"] is None
    plan = read_plan(vault, path).plan
    assert plan.status.value == "completed" and plan.in_flight is None and plan.claim is None
    assert plan.completed_at is not None and len(plan.reflection_log) == 1
    changes = [(e["previous"], e["status"]) for e in read(vault.events_path)
               if e["event"] == "status_changed"]
    assert changes == [("approved", "executing"), ("executing", "completed")]


def test_a_vault_that_cannot_be_listed_keeps_the_folders_seen_last(vault, daemon,
                                                                   monkeypatch):
    """A network mount cut off (ENOTCONN) while the daemon lists the vault: it goes on
    with the folders it knew, it does not exit (issue 13)."""
    write_plan(vault, ["one"])
    seen = daemon._watched()

    def cut(*_):
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
    monkeypatch.setattr(type(vault), "folders", cut)
    assert daemon._watched() == seen


class Finishes:
    """runner.Runner for the loop, without a child: the plan's step is told (as the
    runner does at a step's start) and the plan ends in one write (no process spawned)."""

    def __init__(self, held, lock, token, svc, prewritten):
        self.held, self.svc = held, svc

    def run(self) -> None:
        plan = self.held.plan
        self.svc.periodic(plan, plan.sub_objectives[0])
        self.held.update({"status": "completed", "claim": None, "in_flight": None})


def test_plans_back_to_back_are_told_at_most_a_beat_a_second(vault, clock, monkeypatch):
    """A heartbeat is a file created and renamed: plans that go by faster than a second
    are told once a second (the one running then), not once each; a beat is still
    written every half tick (at most 15 s) when nothing new runs."""
    monkeypatch.setattr("modulatio_d.daemon.loop.Runner", Finishes)
    daemon = Daemon(vault, [], 30.0, True, clock.wall, {}, monotonic=clock.monotonic)
    real_waker, daemon.waker = daemon.waker, FakeWaker(clock)
    for n in range(1, 7):
        write_plan(vault, ["{run: 'true'}"], plan_id=f"P-P-00{n}")
    beats: list[tuple[float, str | None]] = []
    real = daemon.heartbeat.beat
    monkeypatch.setattr(daemon.heartbeat, "beat", lambda now, plan=None, step=None, **k: (
        beats.append((clock.monotonic(), plan)), real(now, plan, step, **k)))
    daemon._beat(clock.wall(), None, None)  # a tick's beat, just before the plans
    for n in range(6):
        assert daemon._claim_and_run(daemon.scanner.scan(clock.wall())) is True
        clock.advance(0.1)
        if n == 2:
            clock.advance(1.0)  # a second later: the plan that starts next is told
    assert [plan for _, plan in beats] == [None, "P-P-004"], beats
    clock.advance(15.0)
    daemon._periodic(None, None)  # nothing new, 15 s since (half a tick): the beat is due
    assert beats[-1] == (clock.monotonic(), None)
    real_waker.close()

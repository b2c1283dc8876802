"""Writing a running plan back, on a fake clock: the write-retry policy (how long a
failing write is tried again), a person's broken save waited out, a settling save."""

from __future__ import annotations

import errno
import os

import pytest
from fakes import FakeClock, failing_updates, services, write_plan

from modulatio_d.core.errors import BadFile, FileChanged
from modulatio_d.daemon.services import Stop
from modulatio_d.daemon.writeback import WRITE_RETRY_TICKS, PlanWriter, WriteRetry
from modulatio_d.store.plan_file import HeldPlan
from modulatio_d.store.vault import SETTLE_S

FULL = OSError(errno.ENOSPC, "No space left on device")


def gone(path="P-P-001.md") -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, "No such file or directory", path)


# --- the policy ---------------------------------------------------------------------


@pytest.mark.parametrize("error", [FULL, PermissionError(errno.EACCES, "denied"),
                                   FileChanged("P-P-001.md")])
def test_a_failing_write_is_tried_again_for_its_patience_then_given_up(error):
    clock = FakeClock()
    retry = WriteRetry(8.0, clock.monotonic)
    assert retry.failing_since is None
    assert retry.again(error)
    assert retry.failing_since == clock.monotonic()
    clock.advance(8.0)
    assert retry.again(error)  # patience is "more than", not "as much as"
    clock.advance(0.01)
    assert not retry.again(error)


def test_a_missing_file_is_an_editors_save_for_settle_s_then_deleted():
    clock = FakeClock()
    retry = WriteRetry(100.0, clock.monotonic)
    assert retry.again(gone())
    clock.advance(SETTLE_S)
    assert retry.again(gone())
    clock.advance(0.01)
    assert not retry.again(gone())  # far less than the disk patience
    assert retry.failing_since is None


def test_a_broken_save_is_waited_out_for_as_long_as_it_takes_and_restarts_gone():
    clock = FakeClock()
    retry = WriteRetry(8.0, clock.monotonic)
    assert retry.again(gone())
    clock.advance(1.5)
    for _ in range(100):  # the file is back, broken: a person is at it
        assert retry.again(BadFile("P-P-001.md", "bad"))
        clock.advance(60)
    assert retry.again(gone())  # missing again: a new editor save, timed from now
    clock.advance(SETTLE_S)
    assert retry.again(gone())


def test_the_clock_starting_at_zero_is_a_time_like_any_other():
    clock = FakeClock(monotonic=0.0)
    retry = WriteRetry(1.0, clock.monotonic)
    assert retry.again(FULL)
    clock.advance(1.5)
    assert not retry.again(FULL)


# --- PlanWriter.write ---------------------------------------------------------------


@pytest.fixture
def held(vault) -> HeldPlan:
    return HeldPlan(vault, write_plan(vault, ["one", "two"]))


def test_a_write_that_fails_for_a_while_lands_and_the_heartbeat_goes_on(held, monkeypatch,
                                                                         caplog):
    clock = FakeClock()
    beats = []
    svc = services(clock, tick_seconds=2.0, periodic=lambda plan, step: beats.append(step))
    failing_updates(monkeypatch, held, [FULL] * 5)
    plan = PlanWriter(held, svc).write({"current_index": 1})
    assert plan.current_index == 1 and "current_index: 1" in held.path.read_text()
    assert svc.waker.waits == [svc.beat_interval()] * 5 == [1.0] * 5
    assert beats == [None] * 5
    said = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(said) == 1  # told once, not at every try


def test_a_write_failing_past_its_patience_goes_up(held, monkeypatch):
    clock = FakeClock()
    svc = services(clock, tick_seconds=2.0)
    calls = failing_updates(monkeypatch, held, [FULL] * 1000)
    start = clock.monotonic()
    with pytest.raises(OSError) as e:
        PlanWriter(held, svc).write({"current_index": 1})
    assert e.value is FULL
    patience = WRITE_RETRY_TICKS * 2.0
    assert patience < clock.monotonic() - start <= patience + svc.beat_interval()
    assert len(calls) == len(svc.waker.waits) + 1


def test_a_stop_request_gives_up_a_failing_write_at_once(held, monkeypatch):
    clock = FakeClock()
    svc = services(clock, stop=Stop(requested=1))
    failing_updates(monkeypatch, held, [FULL])
    with pytest.raises(OSError):
        PlanWriter(held, svc).write({"current_index": 1})
    assert svc.waker.waits == []


def test_a_plan_deleted_mid_run_is_told_once_and_let_go_after_settle_s(held, monkeypatch):
    clock = FakeClock()
    svc = services(clock, tick_seconds=60.0)  # a beat: 15 s, longer than SETTLE_S
    failing_updates(monkeypatch, held, [gone()] * 10)
    with pytest.raises(FileNotFoundError):
        PlanWriter(held, svc).write({"current_index": 1})
    assert svc.waker.waits == [15.0]
    refused = [f for k, f in svc.events if k == "file_refused"]
    assert len(refused) == 1 and "is gone: deleted or moved away" in refused[0]["reason"]


@pytest.mark.parametrize("failures, told", [(4, 0), (5, 1), (6, 1)])
def test_a_fresh_broken_save_is_judged_only_once_it_settles(held, monkeypatch, failures, told):
    """Failures 0, 0.5, 1.0, 1.5 s after the save: maybe an editor half way through, not
    told; at 2.0 s it has settled: told, and once only."""
    clock = FakeClock()
    svc = services(clock, tick_seconds=1.0)  # a beat: 0.5 s
    mtime = clock.wall().timestamp()
    os.utime(held.path, (mtime, mtime))  # saved "now" on the fake clock
    broken = BadFile(held.path, "mapping values are not allowed here", 3)
    failing_updates(monkeypatch, held, [broken] * failures)
    PlanWriter(held, svc).write({"current_index": 1})
    refused = [f for k, f in svc.events if k == "file_refused"]
    assert len(refused) == told and all(f["line"] == 3 for f in refused)
    assert svc.waker.waits == [0.5] * failures

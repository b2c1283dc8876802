"""Writing a running plan back, on a fake clock: the write-retry policy (how long a
failing write is tried again), a person's broken save waited out, a settling save."""

from __future__ import annotations

import errno
import logging
import os

import pytest
from fakes import FakeClock, failing_updates, services, write_plan

from modulatio_d.core.errors import BadFile, FileChanged
from modulatio_d.daemon.services import Stop
from modulatio_d.daemon.writeback import (
    STILL_WAITING_S,
    WRITE_RETRY_TICKS,
    PlanWriter,
    WriteRetry,
    passing,
)
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
    held.path.unlink()  # really gone: its folder no longer lists it
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


# --- a network client's passing errors, the plan still ours ---------------------------

STALE = OSError(errno.ESTALE, "Stale file handle")
CUT = OSError(errno.ENOTCONN, "Transport endpoint is not connected")


def test_passing_errors_are_a_network_clients_and_a_missing_plan_only_while_listed(held):
    assert passing(STALE, None) and passing(CUT, None) and passing(OSError(errno.EIO, "io"), None)
    assert not passing(FULL, held.path) and not passing(FileChanged("x"), held.path)
    assert passing(gone(), held.path)  # the client says missing, the folder lists it
    assert not passing(gone(), None)
    held.path.unlink()
    assert not passing(gone(), held.path)  # deleted: the listing agrees


def test_a_plan_held_through_a_network_clients_errors_is_kept_far_past_its_patience(
        held, monkeypatch, caplog):
    """GlusterFS with its default options: ESTALE, then ENOENT for a file that is there,
    for ~15 s. A 0.5 s tick gives a patience of 2 s: the plan is kept anyway, told once."""
    caplog.set_level(logging.WARNING, logger="modulatio.runner")
    clock = FakeClock()
    svc = services(clock, tick_seconds=0.5)
    failing_updates(monkeypatch, held, [STALE] * 20 + [gone()] * 20)
    plan = PlanWriter(held, svc).write({"current_index": 1})
    assert plan.current_index == 1 and "current_index: 1" in held.path.read_text()
    assert len(svc.waker.waits) == 40 and sum(svc.waker.waits) > 5 * WRITE_RETRY_TICKS * 0.5
    waiting = [f for k, f in svc.events if k == "write_waiting"]
    assert len(waiting) == 1 and "Stale file handle" in waiting[0]["error"]
    assert not [k for k, _ in svc.events if k == "file_refused"]  # the plan was never gone
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("waiting until it can be written" in m for m in said)
    assert any("after waiting" in m for m in said)


def test_a_long_wait_is_told_again_every_so_often(held, monkeypatch):
    clock = FakeClock()
    svc = services(clock, tick_seconds=60.0)  # a beat: 15 s
    n = int(3 * STILL_WAITING_S / 15) + 1
    failing_updates(monkeypatch, held, [CUT] * n)
    PlanWriter(held, svc).write({"current_index": 1})
    assert len([k for k, _ in svc.events if k == "write_waiting"]) == 4


@pytest.mark.parametrize("how", ["replaced", "fenced"])
def test_a_plan_no_longer_ours_is_let_go_at_its_old_patience(held, monkeypatch, caplog, how):
    clock = FakeClock()
    svc = services(clock, tick_seconds=2.0)
    held.token = 2
    if how == "fenced":  # another host's claim, with a higher token, is in the plan
        text = held.path.read_text()
        held.path.write_text(text.replace("status: approved",
                                          "status: executing\nclaim: {host: h2, token: 3}"))
    failing_updates(monkeypatch, held, [STALE] * 1000)
    lock_lost = (lambda: "replaced") if how == "replaced" else (lambda: None)
    with pytest.raises(OSError) as e:
        PlanWriter(held, svc, lock_lost).write({"current_index": 1})
    assert e.value is STALE
    assert len(svc.waker.waits) == WRITE_RETRY_TICKS * 2 + 1
    assert not [k for k, _ in svc.events if k == "write_waiting"]
    told = "its lock file was replaced" if how == "replaced" else "claimed with token 3"
    assert any(told in r.getMessage() for r in caplog.records)


def test_a_stop_request_ends_a_kept_wait(held, monkeypatch):
    clock = FakeClock()
    stop = Stop()
    svc = services(clock, tick_seconds=0.5, stop=stop)
    calls = failing_updates(monkeypatch, held, [STALE] * 1000)
    svc.waker.on_wait = lambda: setattr(stop, "requested", 1) if len(calls) >= 30 else None
    with pytest.raises(OSError):
        PlanWriter(held, svc).write({"current_index": 1})
    assert len(calls) == 31


def test_a_usage_append_is_kept_through_passing_errors_too(held):
    clock = FakeClock()
    svc = services(clock, tick_seconds=0.5)
    failures = [STALE] * 30

    def append():
        if failures:
            raise failures.pop()

    assert PlanWriter(held, svc).patiently(append, "the usage file")
    assert failures == []

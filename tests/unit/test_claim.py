"""The claim compare-and-swap (daemon/claim.py), one step of its protocol per test, with
real locks on real files: flock is per open file description, so a second FileLock in
this process contends exactly like another daemon would (tests/e2e/test_claim_processes.py
uses real second processes). And the short retries after a lost race."""

from __future__ import annotations

import errno
import json
import os

import pytest
from fakes import WALL0, Events, FakeClock, failing_updates, write_plan

from modulatio_d.core.plan import PlanStatus
from modulatio_d.daemon import claim as claim_module
from modulatio_d.daemon.claim import LOST_RACE_RETRY_S, Claimed, Claimer, Missed, RaceRetries
from modulatio_d.daemon.scan import Candidate
from modulatio_d.store.lock import FileLock, holder, is_held, lock_path
from modulatio_d.store.plan_file import HeldPlan, read_plan


def candidate(path, status=PlanStatus.APPROVED) -> Candidate:
    return Candidate((0,), path, "P", status)


@pytest.fixture
def claimer(vault):
    return Claimer(vault, Events(), FakeClock().wall, "host-a", 4242)


def test_an_approved_plan_is_claimed_in_one_write(vault, claimer):
    path = write_plan(vault, ["one", "two"])
    got = claimer.claim(candidate(path))
    assert isinstance(got, Claimed) and got.token == 1
    try:
        plan = read_plan(vault, path).plan
        assert plan.status is PlanStatus.EXECUTING and plan.rev == 1
        assert plan.claim == {"host": "host-a", "pid": 4242, "token": 1,
                              "claimed_at": "2025-11-04T10:00:00Z"}
        assert plan.execution_started_at == WALL0
        assert is_held(lock_path(path))
        assert holder(lock_path(path)) == {"host": "host-a", "pid": 4242, "token": 1,
                                           "claimed_at": WALL0.isoformat(), "plan": "P-P-001"}
        assert claimer.events == [
            ("claimed", {"project": "P", "plan": "P-P-001", "token": 1, "index": 0,
                         "previous_claim": None}),
            ("status_changed", {"project": "P", "plan": "P-P-001", "previous": "approved",
                                "status": "executing", "by": "daemon"})]
    finally:
        got.lock.release()


@pytest.mark.parametrize("shared", [False, True])
def test_the_release_note_is_fsynced_only_on_a_network_filesystem(vault, claimer, shared,
                                                                  monkeypatch):
    """On a local disk the plan (fsynced first) holds the note's rev and token: the note
    needs no fsync of its own (claim.py, step 6); on a network one it is read by other
    hosts and is fsynced."""
    path = write_plan(vault, ["one"])
    claimer.shared = shared
    got = claimer.claim(candidate(path))
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    got.release()
    assert len(synced) == (1 if shared else 0)  # the lock file's, before it is let go
    assert holder(lock_path(path))["released"] is True and holder(lock_path(path))["rev"] == 1


def test_a_busy_lock_is_a_lost_race_and_the_file_is_not_touched(vault, claimer):
    path = write_plan(vault, ["one"])
    before = path.read_bytes()
    other = FileLock(lock_path(path))
    assert other.try_acquire()
    try:
        assert claimer.claim(candidate(path)) is Missed.LOST
    finally:
        other.release()
    assert path.read_bytes() == before
    assert claimer.events == [("claim_lost", {"project": "P", "plan": "P-P-001"})]


@pytest.mark.parametrize("status", ["paused", "completed", "draft", "aborted"])
def test_a_plan_no_longer_claimable_under_the_lock_is_left_and_the_lock_freed(
        vault, claimer, status):
    path = write_plan(vault, ["one"])
    c = candidate(path)  # what the scan saw ...
    path.write_text(path.read_text().replace("status: approved", f"status: {status}"))
    before = path.read_bytes()  # ... before a person or another daemon changed it
    assert claimer.claim(c) is Missed.NOT_CLAIMABLE
    assert path.read_bytes() == before and not is_held(lock_path(path))
    assert claimer.events == []


def test_an_orphan_is_taken_over_with_the_next_token_and_its_start_kept(vault, claimer):
    path = write_plan(vault, ["one", "two"], status="executing", extra=(
        "claim: {host: host-b, pid: 7, token: 4, claimed_at: 2025-11-01T09:00:00Z}\n"
        "execution_started_at: 2025-11-01T09:00:00Z"))
    path.write_text(path.read_text().replace("current_index: 0", "current_index: 1"))
    got = claimer.claim(candidate(path, PlanStatus.EXECUTING))
    assert isinstance(got, Claimed) and got.token == 5
    got.lock.release()
    plan = read_plan(vault, path).plan
    assert plan.claim["token"] == 5 and plan.claim["host"] == "host-a"
    assert plan.execution_started_at.isoformat() == "2025-11-01T09:00:00+00:00"
    (kind, fields), = claimer.events  # no status_changed: it was executing already
    assert kind == "orphan_recovered" and fields["token"] == 5 and fields["index"] == 1
    assert fields["previous_claim"]["token"] == 4 and fields["previous_claim"]["pid"] == 7


def test_a_stale_editor_save_is_repaired_under_the_lock_before_the_claim(vault, claimer):
    """A daemon ran step 0 then stopped; an editor saved a buffer from before that."""
    path = write_plan(vault, ["one", "two"])
    old = Claimer(vault, Events(), FakeClock().wall, "host-b", 7).claim(candidate(path))
    stale = path.read_text()  # rev 1: executing at step 0
    old.held.update({"current_index": 1,
                     "reflection_log": [{"index": 0, "outcome": "ok", "token": 1}]})
    old.lock.release()
    tmp = path.with_name(".P-P-001.md.swp")
    tmp.write_text(stale.replace("title: A plan", "title: A plan, renamed"))
    os.replace(tmp, path)
    got = claimer.claim(candidate(path, PlanStatus.EXECUTING))
    assert isinstance(got, Claimed) and got.token == 2
    got.lock.release()
    plan = read_plan(vault, path).plan
    assert plan.current_index == 1 and len(plan.reflection_log) == 1  # step 0 not rerun
    assert plan.title == "A plan, renamed"  # the person's edit stays
    assert claimer.events.kinds() == ["stale_save_repaired", "orphan_recovered"]


def test_a_bad_plan_is_refused_and_the_lock_freed(vault, claimer):
    path = write_plan(vault, ["one"])
    c = candidate(path)
    path.write_text(path.read_text().replace("sub_objectives:", "sub_objectives: [a\n"))
    assert claimer.claim(c) is Missed.REFUSED
    assert not is_held(lock_path(path))


def test_a_lock_file_that_is_a_link_is_refused(vault, claimer, tmp_path):
    path = write_plan(vault, ["one"])
    lock_path(path).symlink_to(tmp_path / "elsewhere.lock")
    assert claimer.claim(candidate(path)) is Missed.REFUSED
    assert not (tmp_path / "elsewhere.lock").exists()


def test_a_plan_deleted_meanwhile_is_gone(vault, claimer):
    path = write_plan(vault, ["one"])
    c = candidate(path)
    path.unlink()
    assert claimer.claim(c) is Missed.GONE
    assert not is_held(lock_path(path))


def test_a_claim_that_cannot_be_written_is_unwritable(vault, claimer, monkeypatch):
    path = write_plan(vault, ["one"])
    before = path.read_bytes()

    failing_updates(monkeypatch, HeldPlan, [OSError(errno.ENOSPC, "No space left on device")])
    assert claimer.claim(candidate(path)) is Missed.UNWRITABLE
    assert not is_held(lock_path(path)) and path.read_bytes() == before
    assert claimer.events == []


def test_release_frees_the_lock_and_touches_a_plan_left_executing(vault, claimer):
    path = write_plan(vault, ["one"])
    got = claimer.claim(candidate(path))
    past = 1_000_000_000
    os.utime(path, (past, past))
    got.release()
    assert not is_held(lock_path(path))
    assert os.stat(path).st_mtime > past  # a file event: idle daemons take the orphan now


def test_release_leaves_a_finished_plan_untouched(vault, claimer):
    path = write_plan(vault, ["one"])
    got = claimer.claim(candidate(path))
    got.held.update({"status": "completed"})
    past = 1_000_000_000
    os.utime(path, (past, past))
    got.release()
    assert os.stat(path).st_mtime == past and not is_held(lock_path(path))
    assert json.loads(lock_path(path).read_text())["token"] == 1  # the text is only a note


# --- a plan claimed by a live daemon whose lock file was deleted -------------------


@pytest.fixture
def live_daemon():
    """A live process of this host whose command line reads like `modulatio daemon`."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(60)",
                             "modulatio", "daemon"])
    yield proc.pid
    proc.kill()
    proc.wait()


def claimed_by(vault, pid: int, host: str) -> object:
    return write_plan(vault, ["one"], status="executing", extra=(
        f"claim: {{host: {host}, pid: {pid}, token: 3, claimed_at: 2025-11-04T09:00:00Z}}\n"
        "in_flight: {index: 0, attempt: 1, token: 3, started_at: 2025-11-04T09:00:00Z}"))


def beat(vault, pid: int, host: str, last_tick: str, active_plan: str | None) -> None:
    vault.daemons_dir.mkdir(parents=True, exist_ok=True)
    (vault.daemons_dir / f"{host}.{pid}.json").write_text(json.dumps(
        {"pid": pid, "host": host, "last_tick": last_tick, "active_plan": active_plan}))


@pytest.mark.parametrize("heartbeat", [None, "on this plan", "before the claim"])
def test_a_plan_claimed_by_a_live_daemon_here_is_held_not_orphaned(vault, live_daemon,
                                                                   heartbeat):
    import socket

    host = socket.gethostname()
    path = claimed_by(vault, live_daemon, host)
    if heartbeat == "on this plan":
        beat(vault, live_daemon, host, "2025-11-04T09:30:00Z", "P-P-001")
    elif heartbeat == "before the claim":
        beat(vault, live_daemon, host, "2025-11-04T08:00:00Z", None)
    claimer = Claimer(vault, Events(), FakeClock().wall, host, 4242)
    before = path.read_bytes()
    for _ in range(3):  # every pass refuses; it is told once
        assert claimer.claim(candidate(path, PlanStatus.EXECUTING)) is Missed.HELD
    assert path.read_bytes() == before and not is_held(lock_path(path))
    assert claimer.events == [("claim_refused_live_holder", {
        "project": "P", "plan": "P-P-001", "holder_pid": live_daemon, "holder_host": host})]


@pytest.mark.parametrize("why", ["moved on", "dead", "not a daemon", "another host", "us"])
def test_a_plan_whose_claimer_is_gone_or_moved_on_is_an_orphan(vault, live_daemon, why):
    import socket

    host = socket.gethostname()
    pid = live_daemon
    if why == "dead":
        pid = 2 ** 22 + 1  # beyond the largest pid_max: never alive
    elif why == "not a daemon":
        pid = os.getpid()  # pytest: alive, but no `modulatio daemon`
    elif why == "moved on":
        beat(vault, pid, host, "2025-11-04T09:00:01Z", None)  # a beat after the claim
    path = claimed_by(vault, pid, "elsewhere" if why == "another host" else host)
    claimer = Claimer(vault, Events(), FakeClock().wall, host, pid if why == "us" else 4242)
    got = claimer.claim(candidate(path, PlanStatus.EXECUTING))
    assert isinstance(got, Claimed) and got.token == 4
    got.lock.release()
    assert claimer.events.kinds() == ["orphan_recovered"]


# --- the short retries after a lost race ------------------------------------------


def test_passes_that_lose_races_retry_soon_then_fall_back_to_the_tick():
    races = RaceRetries()
    waits = []
    for _ in range(5):
        races.start_pass()
        races.lost = True
        waits.append(races.next_wait(30.0))
    assert waits == [*LOST_RACE_RETRY_S, 30.0, 30.0]


def test_a_pass_without_a_lost_race_or_a_plan_run_starts_the_retries_over():
    races = RaceRetries()
    races.lost = True
    assert races.next_wait(30.0) == LOST_RACE_RETRY_S[0]
    races.start_pass()
    assert races.next_wait(30.0) == 30.0  # nothing lost this pass
    races.lost = True
    assert races.next_wait(30.0) == LOST_RACE_RETRY_S[0]
    races.lost = True
    races.ran()
    assert races.next_wait(30.0) == LOST_RACE_RETRY_S[0]


def test_a_short_tick_is_never_made_longer():
    races = RaceRetries()
    races.lost = True
    races.next_wait(0.1)
    races.lost = True
    assert races.next_wait(0.1) == 0.1


def test_a_retried_plan_gets_a_token_above_every_one_its_attempts_used(vault, claimer):
    """An ended plan keeps no claim; its log still says which tokens ran."""
    path = write_plan(vault, ["one"], status="approved",
                      extra="reflection_log_placeholder: 0")
    path.write_text(path.read_text().replace("reflection_log: []\n", "").replace(
        "reflection_log_placeholder: 0",
        "reflection_log:\n  - {index: 0, attempt: 1, outcome: failed, token: 7}\n"
        "in_flight: {index: 0, attempt: 2, token: 8}"))
    got = claimer.claim(candidate(path))
    try:
        assert got.token == 9
    finally:
        got.lock.release()


def test_on_a_network_filesystem_a_note_not_yet_released_is_read_again(
        vault, claimer, monkeypatch):
    """Another host's release note can read old for a moment: the claim-time note of the
    last holder (no `released`). On a network filesystem it is read again, the clock
    bounded (no real sleep here: each sleep is where the release lands)."""
    path = write_plan(vault, ["one"])
    lock = FileLock(lock_path(path))
    assert lock.try_acquire()
    lock.note_holder(host="h1", pid=7, token=1, plan=path.stem)  # its claim, read old
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        lock.note_holder(host="h1", pid=7, token=1, plan=path.stem, rev=4, released=True)
    monkeypatch.setattr(claim_module.time, "sleep", sleep)
    try:
        assert claimer._noted(lock, False).get("released") is None  # a local disk: no second look
        claimer.shared = True
        assert claimer._noted(lock, False) == {"host": "h1", "pid": 7, "token": 1,
                                        "plan": path.stem, "rev": 4, "released": True}
        assert len(sleeps) == 1
    finally:
        lock.release()


def test_a_holder_that_died_without_its_release_note_delays_the_claim_boundedly(
        vault, claimer, monkeypatch):
    path = write_plan(vault, ["one"])
    lock = FileLock(lock_path(path))
    assert lock.try_acquire()
    lock.note_holder(host="h1", pid=7, token=1, plan=path.stem)
    clock = FakeClock()
    monkeypatch.setattr(claim_module.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(claim_module.time, "sleep", clock.advance)
    claimer.shared = True
    try:
        start = clock.monotonic()
        assert claimer._noted(lock, False).get("token") == 1
        assert claim_module.FRESH_WAIT_S <= clock.monotonic() - start \
            <= claim_module.FRESH_WAIT_S + claim_module.FRESH_POLL_S
    finally:
        lock.release()

"""Fencing (daemon/runner.py, store/plan_file.py): a daemon whose lock was freed under it
(its host cut off from the file server) finds a higher claim token on the plan. A second
holder is faked by a second HeldPlan writing a new claim, as another host's daemon would."""

from __future__ import annotations

import json
import sys

import pytest
from fakes import Events, FakeClock, FakeWaker, services, write_plan

from modulatio_d.core.errors import Fenced
from modulatio_d.core.plan import PlanStatus
from modulatio_d.daemon import claim as claim_mod
from modulatio_d.daemon.claim import Claimed, Claimer
from modulatio_d.daemon.runner import Runner
from modulatio_d.daemon.scan import Candidate
from modulatio_d.store.lock import holder, lock_path
from modulatio_d.store.plan_file import HeldPlan

STEPS = [f"title: long\n    run: {sys.executable} -c 'import time; time.sleep(60)'",
         "title: after\n    run: 'true'"]


def claim(vault, path, host: str, pid: int) -> Claimed:
    got = Claimer(vault, Events(), FakeClock().wall, host, pid).claim(
        Candidate((0,), path, "P", PlanStatus.APPROVED))
    assert isinstance(got, Claimed)
    return got


def take_over(vault, path, token: int) -> bytes:
    """What another host's daemon does once the file server freed our lock: claim with
    a higher token (its own lock is a different mount's; here no lock is needed)."""
    other = HeldPlan(vault, path)
    other.update({"claim": {"host": "host-b", "pid": 7, "token": token,
                            "claimed_at": "2025-11-04T10:00:05Z"}, "current_index": 1})
    return path.read_bytes()


def test_a_write_over_a_higher_claim_token_raises_and_writes_nothing(vault):
    path = write_plan(vault, ["one", "two"])
    mine = claim(vault, path, "host-a", 11)
    try:
        mine.held.token = mine.token
        mine.held.update({"current_index": 1})  # still ours: written
        theirs = take_over(vault, path, mine.token + 1)
        with pytest.raises(Fenced) as e:
            mine.held.update({"current_index": 2, "last_error": "late"})
        assert (e.value.ours, e.value.theirs) == (1, 2)
        assert path.read_bytes() == theirs
        assert mine.held.fenced_by() == 2
    finally:
        mine.release()
    assert path.read_bytes() == theirs  # not even touched on release


def test_the_claim_write_itself_and_a_lower_token_are_not_fenced(vault):
    path = write_plan(vault, ["one"])
    mine = claim(vault, path, "host-a", 11)
    try:
        assert mine.held.fenced_by() is None  # token unset until the run starts
        mine.held.token = mine.token + 1  # a plan whose claim a person lowered
        mine.held.update({"current_index": 1})
    finally:
        mine.release()


def run_fenced(mine, path, clock, other_host, seen: dict[str, bytes], index: int) -> None:
    """Run `mine` while `other_host` (called from the step's wait) takes the plan over:
    the 60 s step is stopped at once, the file is what the other host left, the fence is
    told (at step `index`) and no step's end is."""
    svc = services(clock, waker=FakeWaker(clock, other_host))
    try:
        started = clock.monotonic()
        Runner(mine.held, mine.lock, mine.token, svc).run()
        assert clock.monotonic() - started < 30  # the 60 s step was stopped at once
    finally:
        mine.release()
    assert path.read_bytes() == seen["theirs"]
    fenced = [f for kind, f in svc.events if kind == "claim_lost_to_fence"]
    assert fenced == [{"project": "P", "plan": "P-P-001", "token": 1, "new_token": 2,
                       "new_host": "host-b", "new_pid": 7, "index": index}]
    assert not [k for k, _ in svc.events if k == "step_ended"]


def test_a_running_step_is_killed_when_another_claim_appears_and_nothing_is_written(vault):
    path = write_plan(vault, STEPS)
    mine = claim(vault, path, "host-a", 11)
    clock = FakeClock()
    seen: dict[str, bytes] = {}

    def another_host_claims() -> None:
        if not seen:
            seen["theirs"] = take_over(vault, path, mine.token + 1)

    run_fenced(mine, path, clock, another_host_claims, seen, index=1)


def test_a_running_step_is_killed_when_the_new_holder_already_completed_the_plan(vault):
    # Back from a cut, the old holder finds the plan completed by the new holder: its
    # claim is gone with the end (the token is in the log), the lock file notes who.
    path = write_plan(vault, STEPS)
    mine = claim(vault, path, "host-a", 11)
    clock = FakeClock()
    seen: dict[str, bytes] = {}

    def another_host_completed_it() -> None:
        if seen:
            return
        take_over(vault, path, mine.token + 1)
        other = HeldPlan(vault, path)
        entry = {"index": 1, "title": "after", "attempt": 1, "outcome": "ok",
                 "token": mine.token + 1}
        other.update({"claim": None, "status": "completed", "current_index": 2,
                      "reflection_log": [*other.plan.reflection_log, entry]})
        lock_path(path).write_text(json.dumps({"host": "host-b", "pid": 7, "plan": "P-P-001",
                                               "token": mine.token + 1, "released": True}))
        seen["theirs"] = path.read_bytes()

    run_fenced(mine, path, clock, another_host_completed_it, seen, index=2)


# --- freshness under the lock (daemon/claim.py step 2, Claimed.release) ---------------


def test_release_notes_the_last_rev_and_token_in_the_lock_file(vault):
    path = write_plan(vault, ["one", "two"])
    mine = claim(vault, path, "host-a", 11)
    mine.held.update({"current_index": 1})
    mine.release()
    assert {k: v for k, v in holder(lock_path(path)).items() if k in ("rev", "token")} == \
        {"rev": 2, "token": 1}


def test_release_of_an_ended_plan_still_notes_who_held_it(vault):
    # The claim goes with the end; a fenced holder back from a cut reads who it was here.
    path = write_plan(vault, ["one"])
    mine = claim(vault, path, "host-a", 11)
    mine.held.update({"status": "completed", "claim": None, "current_index": 1})
    mine.release()
    noted = holder(lock_path(path))
    assert (noted["host"], noted["pid"], noted["token"]) == ("host-a", 11, 1)


def test_a_claimer_reads_again_until_the_plan_reaches_the_noted_rev(vault, monkeypatch):
    path = write_plan(vault, ["one", "two"])
    first = claim(vault, path, "host-a", 11)
    first.held.update({"current_index": 1})
    fresh = path.read_bytes()
    first.release()
    # This host's client still serves the version from before the last write: the
    # claimer must wait for the fresh one (here it arrives after two looks).
    stale = fresh.replace(b"rev: 2", b"rev: 1").replace(b"current_index: 1",
                                                          b"current_index: 0")
    path.write_bytes(stale)
    looks = []

    def sleep(seconds: float) -> None:
        looks.append(seconds)
        if len(looks) == 2:
            path.write_bytes(fresh)
    monkeypatch.setattr(claim_mod.time, "sleep", sleep)
    events = Events()
    got = Claimer(vault, events, FakeClock().wall, "host-b", 7).claim(
        Candidate((0,), path, "P", PlanStatus.EXECUTING))
    assert isinstance(got, Claimed)
    try:
        assert len(looks) == 2
        assert got.held.plan.current_index == 1 and got.token == 2
        assert not [k for k, _ in events if k == "claim_read_behind"]
    finally:
        got.release()


def test_a_claimer_goes_on_after_a_bounded_wait_and_says_so(vault, monkeypatch):
    path = write_plan(vault, ["one"])
    first = claim(vault, path, "host-a", 11)
    first.lock.note_holder(rev=9, token=4)  # as if a later holder noted it
    first.lock.release()
    monkeypatch.setattr(claim_mod, "FRESH_WAIT_S", 0.0)
    events = Events()
    got = Claimer(vault, events, FakeClock().wall, "host-b", 7).claim(
        Candidate((0,), path, "P", PlanStatus.EXECUTING))
    assert isinstance(got, Claimed)
    try:
        assert got.token == 5  # above the noted token, though the plan says 1
        assert [f for k, f in events if k == "claim_read_behind"] == [
            {"project": "P", "plan": "P-P-001", "rev": 1, "noted_rev": 9}]
    finally:
        got.release()

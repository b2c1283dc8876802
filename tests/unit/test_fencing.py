"""Fencing (daemon/runner.py, store/plan_file.py): a daemon whose lock was freed under it
(its host cut off from the file server) finds a higher claim token on the plan. A second
holder is faked by a second HeldPlan writing a new claim, as another host's daemon would."""

from __future__ import annotations

import sys

import pytest
from fakes import Events, FakeClock, FakeWaker, services, write_plan

from modulatio_d.core.errors import Fenced
from modulatio_d.core.plan import PlanStatus
from modulatio_d.daemon.claim import Claimed, Claimer
from modulatio_d.daemon.runner import Runner
from modulatio_d.daemon.scan import Candidate
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


def test_a_running_step_is_killed_when_another_claim_appears_and_nothing_is_written(vault):
    path = write_plan(vault, STEPS)
    mine = claim(vault, path, "host-a", 11)
    clock = FakeClock()
    seen: dict[str, bytes] = {}

    def another_host_claims() -> None:
        if not seen:
            seen["theirs"] = take_over(vault, path, mine.token + 1)

    svc = services(clock, waker=FakeWaker(clock, another_host_claims))
    try:
        started = clock.monotonic()
        Runner(mine.held, mine.lock, mine.token, svc).run()
        assert clock.monotonic() - started < 30  # the 60 s step was stopped at once
    finally:
        mine.release()
    assert path.read_bytes() == seen["theirs"]
    fenced = [f for kind, f in svc.events if kind == "claim_lost_to_fence"]
    assert fenced == [{"project": "P", "plan": "P-P-001", "token": 1, "new_token": 2,
                       "new_host": "host-b", "new_pid": 7, "index": 1}]
    assert not [k for k, _ in svc.events if k == "step_ended"]

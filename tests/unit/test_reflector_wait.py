"""A reflector's child watched like a step (daemon/reflect.py with attempt.watch), on a
fake clock: a real `sh` that never answers is killed with its group at the timeout."""

from __future__ import annotations

from fakes import FakeClock, services
from waiting import wait_for

from modulatio_d.core.plan import StepKind, SubObjective
from modulatio_d.core.verdict import Decision, Outcome
from modulatio_d.daemon import attempt, reflect
from modulatio_d.daemon.reflect import decide
from modulatio_d.store import processes

ATTEMPT = {"index": 2, "title": "t", "attempt": 1, "outcome": "failed", "exit": "exit 1"}


def step(retries: int = 0) -> SubObjective:
    return SubObjective(index=2, title="t", kind=StepKind.RUN, run="x", retries=retries)


def test_a_reflector_that_never_answers_is_killed_and_the_default_decides(tmp_path):
    """Watched like a step (attempt.watch, on a fake clock): past TIMEOUT_S its process
    group is killed (a grandchild too) and the default verdict decides."""
    clock = FakeClock()
    svc = services(clock, tick_seconds=4.0)
    beats = []
    pids = tmp_path / "pids"

    def wait(child, timeout):
        wait_for(pids.exists, 10, "the reflector started its grandchild")  # real time
        return attempt.watch(child, clock.monotonic() + timeout, svc,
                             lambda: beats.append(clock.monotonic()))

    v = decide(f"sleep 1000 & echo $! > {pids}; wait", step(retries=1), Outcome.FAILED, 1,
               dict(ATTEMPT), str(tmp_path), {"PATH": "/usr/bin:/bin"}, wait)
    assert v.decision is Decision.RETRY  # the default's
    assert clock.monotonic() - 1000.0 >= reflect.TIMEOUT_S
    assert len(beats) >= reflect.TIMEOUT_S / svc.beat_interval() - 1  # beats went on
    grandchild = int(pids.read_text())
    wait_for(lambda: processes.gone(grandchild), 5, "the reflector's group killed")

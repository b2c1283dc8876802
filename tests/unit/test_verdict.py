"""The default verdict after each attempt: every outcome against `retries` and
`on_failure` (pure: core/verdict.py)."""

from __future__ import annotations

import itertools

import pytest

from modulatio_d.core.plan import OnFailure, StepKind, SubObjective
from modulatio_d.core.verdict import FAILURES, Decision, Outcome, default

FAILING = [Outcome.FAILED, Outcome.TIMEOUT, Outcome.ERROR]
AFTER_RETRIES = {OnFailure.PAUSE: Decision.PAUSE, OnFailure.ABORT: Decision.ABORT,
                 OnFailure.CONTINUE: Decision.CONTINUE}


def step(retries: int = 0, on_failure: OnFailure = OnFailure.PAUSE) -> SubObjective:
    return SubObjective(index=2, title="t", kind=StepKind.RUN, run="x", retries=retries,
                        on_failure=on_failure)


@pytest.mark.parametrize("outcome, retries, on_failure",
                         list(itertools.product(list(Outcome), [0, 1, 3], list(OnFailure))))
def test_default_for_every_outcome_retries_and_on_failure(outcome, retries, on_failure):
    s = step(retries, on_failure)
    if outcome is Outcome.OK:
        for failures in range(retries + 3):  # earlier failures do not matter once it works
            assert default(s, outcome, failures).decision is Decision.CONTINUE
        return
    # Any other outcome is a failed attempt: retried while retries remain...
    # (aborted and interrupted never reach a reflector: the runner decides those itself)
    decisions = [default(s, outcome, n).decision for n in range(1, retries + 3)]
    assert decisions[:retries] == [Decision.RETRY] * retries
    # ... then on_failure decides, for that attempt and any later one.
    assert decisions[retries:] == [AFTER_RETRIES[on_failure]] * 2
    verdict = default(s, outcome, retries + 1)
    assert f"{outcome} after {retries + 1} attempt(s); on_failure: {on_failure}" == verdict.reason


def test_retry_reason_counts_the_retries():
    assert default(step(2), Outcome.TIMEOUT, 1).reason == "attempt failed (timeout); retry 1 of 2"


def test_failures_are_the_failing_outcomes():
    assert FAILURES == set(FAILING)


def test_no_reflector_is_the_default():
    from modulatio_d.daemon.reflect import decide
    attempt = {"index": 2, "title": "t", "attempt": 1, "outcome": "failed"}
    for reflector in ("", None):
        assert decide(reflector, step(), Outcome.OK, 1, dict(attempt), "/",
                      {"PATH": "/usr/bin:/bin"}).decision is Decision.CONTINUE
    assert decide(None, step(), Outcome.FAILED, 1, dict(attempt), "/",
                  {"PATH": "/usr/bin:/bin"}).decision is Decision.PAUSE

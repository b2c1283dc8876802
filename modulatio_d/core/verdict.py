"""What an attempt of a sub-objective ended with, and what happens next by default.

An attempt ends with an `Outcome`; a reflector (daemon/reflect.py) turns it into
a `Verdict`. The default verdict follows the step's `retries` and `on_failure`:
success continues; a failure retries while attempts remain, then pauses (opening
a ticket), aborts (the plan fails) or continues, as `on_failure` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from modulatio_d.core.plan import OnFailure, SubObjective


class Outcome(StrEnum):
    OK = "ok"
    """The step's process exited 0."""
    FAILED = "failed"
    """It exited non-zero or died of a signal."""
    TIMEOUT = "timeout"
    """It ran past its timeout and its process group was killed."""
    ERROR = "error"
    """It could not be started (unknown agent, missing folder)."""
    ABORTED = "aborted"
    """A person aborted the plan and the step's process group was killed."""
    INTERRUPTED = "interrupted"
    """The daemon stopped or died mid-attempt; found in flight on resume."""


FAILURES = frozenset({Outcome.FAILED, Outcome.TIMEOUT, Outcome.ERROR})
"""The outcomes that count against a step's `retries` (and as failed steps in metrics)."""


class Decision(StrEnum):
    CONTINUE = "continue"
    RETRY = "retry"
    PAUSE = "pause"
    REVISE_MAJOR = "revise-major"
    ABORT = "abort"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str


def default(step: SubObjective, outcome: Outcome, failures: int) -> Verdict:
    """`failures`: failed attempts of this step so far, this one included."""
    if outcome is Outcome.OK:
        return Verdict(Decision.CONTINUE, "the step succeeded")
    if failures <= step.retries:
        return Verdict(Decision.RETRY, f"attempt failed ({outcome}); retry "
                       f"{failures} of {step.retries}")
    spent = f"{outcome} after {failures} attempt(s)"
    return {
        OnFailure.PAUSE: Verdict(Decision.PAUSE, f"{spent}; on_failure: pause"),
        OnFailure.ABORT: Verdict(Decision.ABORT, f"{spent}; on_failure: abort"),
        OnFailure.CONTINUE: Verdict(Decision.CONTINUE, f"{spent}; on_failure: continue"),
    }[step.on_failure]

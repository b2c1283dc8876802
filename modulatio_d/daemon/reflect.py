"""The decision after each attempt of a sub-objective.

The default reflector follows the step's `retries` and `on_failure`: success
continues; a failure retries while attempts remain, then pauses (opening a
ticket), aborts (the plan fails) or continues, as `on_failure` says.

A plan's `reflector:` (else the config's) replaces it: a command, run in
`sh -c` with the attempt as JSON on stdin, that prints one JSON object
`{"decision": "continue|retry|pause|revise-major|abort", "reason": "..."}`;
or `plugin:NAME`, a function from the entry-point group
`modulatio_d.reflectors` that takes the same dict and returns that object.
A reflector that fails or answers nonsense is logged and the default decides.
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import entry_points

from modulatio_d.core.plan import OnFailure, SubObjective

log = logging.getLogger("modulatio.reflect")
GROUP = "modulatio_d.reflectors"
TIMEOUT_S = 60


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


def decide(reflector: str | None, step: SubObjective, outcome: Outcome, failures: int,
           attempt: dict, cwd: str, env: dict[str, str]) -> Verdict:
    fallback = default(step, outcome, failures)
    if not reflector:
        return fallback
    try:
        answer = _ask(reflector, {**attempt, "default_decision": fallback.decision.value},
                      cwd, env)
        return Verdict(Decision(str(answer["decision"])), str(answer.get("reason", reflector)))
    except Exception as e:  # a broken reflector must not stop the plan
        log.warning("reflector %r failed (%s); the default decides: %s", reflector, e,
                    fallback.decision.value)
        return fallback


def _ask(reflector: str, attempt: dict, cwd: str, env: dict[str, str]) -> dict:
    if reflector.startswith("plugin:"):
        name = reflector.removeprefix("plugin:")
        found = entry_points(group=GROUP, name=name)
        if not found:
            raise LookupError(f"no plugin {name!r} in entry-point group {GROUP}")
        answer = next(iter(found)).load()(attempt)
    else:
        done = subprocess.run(["/bin/sh", "-c", reflector], input=json.dumps(attempt),
                              capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd,
                              env=env)
        if done.returncode != 0:
            raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-200:]}")
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    if not isinstance(answer, dict) or "decision" not in answer:
        raise ValueError(f"answer {answer!r} has no decision")
    return answer

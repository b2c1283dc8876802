"""The decision after each attempt of a sub-objective: asking a reflector.

Without one, the default verdict decides (core/verdict.py: the step's
`retries` and `on_failure`). A plan's `reflector:` (else the config's)
replaces it: a command, run in `sh -c` with the attempt as JSON on stdin,
that prints one JSON object
`{"decision": "continue|retry|pause|revise-major|abort", "reason": "..."}`;
or `plugin:NAME`, a function from the entry-point group
`modulatio_d.reflectors` that takes the same dict and returns that object.
A reflector that fails or answers nonsense is logged and the default decides.
"""

from __future__ import annotations

import json
import logging
import subprocess
from importlib.metadata import entry_points

from modulatio_d.core.plan import SubObjective
from modulatio_d.core.verdict import Decision, Outcome, Verdict, default

log = logging.getLogger("modulatio.reflect")
GROUP = "modulatio_d.reflectors"
TIMEOUT_S = 60


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

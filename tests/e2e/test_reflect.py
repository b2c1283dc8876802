"""The decision after each attempt made by a reflector process: command reflectors, and
a plan's reflector with a real daemon (the default over every outcome, `retries` and
`on_failure`: tests/unit/test_reflect_rules.py)."""

from __future__ import annotations

import json

import pytest
from helpers import plan, write_plan

from modulatio_d.core.plan import OnFailure, StepKind, SubObjective
from modulatio_d.core.verdict import Decision, Outcome
from modulatio_d.daemon.reflect import decide

pytestmark = pytest.mark.timeout(30)

FAILING = [Outcome.FAILED, Outcome.TIMEOUT, Outcome.ERROR]


def step(retries: int = 0, on_failure: OnFailure = OnFailure.PAUSE) -> SubObjective:
    return SubObjective(index=2, title="t", kind=StepKind.RUN, run="x", retries=retries,
                        on_failure=on_failure)


ATTEMPT = {"index": 2, "title": "t", "attempt": 1, "outcome": "failed", "exit": "exit 1"}


def ask(reflector: str, outcome: Outcome = Outcome.FAILED, retries: int = 0, tmp_path=None):
    return decide(reflector, step(retries), outcome, 1, dict(ATTEMPT), str(tmp_path or "/"),
                  {"PATH": "/usr/bin:/bin"})


def test_command_reflector_decides_and_sees_the_attempt(tmp_path):
    seen = tmp_path / "seen.json"
    v = ask(f"cat > {seen}; echo noise; "
            "echo '{\"decision\": \"revise-major\", \"reason\": \"rethink it\"}'",
            retries=1, tmp_path=tmp_path)
    assert (v.decision, v.reason) == (Decision.REVISE_MAJOR, "rethink it")
    sent = json.loads(seen.read_text())
    assert sent == {**ATTEMPT, "default_decision": "retry"}


@pytest.mark.parametrize("reflector", [
    "exit 3",                                         # fails
    "echo not json",                                  # nonsense
    "echo '{\"reason\": \"no decision\"}'",            # no decision
    "echo '{\"decision\": \"explode\"}'",              # unknown decision
    "echo '[\"continue\"]'",                           # not an object
    "true",                                           # prints nothing
    "plugin:no-such-reflector",                       # plugin not installed
])
def test_broken_reflector_falls_back_to_the_default(reflector, caplog):
    v = ask(reflector, retries=1)
    assert v.decision is Decision.RETRY
    assert any("the default decides" in r.getMessage() for r in caplog.records)


def test_plan_reflector_with_a_daemon(dvault, daemons):
    """A plan's reflector answers revise-major for a failed step: paused, critical ticket."""
    script = dvault.root / "tools" / "reflect.sh"
    script.write_text('read -r attempt\n'
                      'case "$attempt" in\n'
                      '  *\'"outcome": "ok"\'*) d=continue;;\n'
                      '  *) d=revise-major;;\n'
                      'esac\n'
                      'echo "{\\"decision\\": \\"$d\\", \\"reason\\": \\"said the script\\"}"\n')
    write_plan(dvault, "P-P-001", [{"title": "fine", "run": "true"},
                                   {"title": "bad", "run": "exit 1", "retries": 3},
                                   {"title": "never", "run": "touch never"}],
               extra=f'reflector: "sh {script}"')
    d = daemons("--once")
    assert d.wait(15) == 0, d.log()
    p = plan(dvault, "P-P-001")
    assert p.status.value == "paused" and p.current_index == 1
    assert [(e["outcome"], e["decision"]) for e in p.reflection_log] == [
        ("ok", "continue"), ("failed", "revise-major")]  # no retries: the reflector said so
    assert "said the script" in p.last_error
    text = next((dvault.root / "P" / "tickets").glob("*.md")).read_text()
    assert "severity: critical" in text

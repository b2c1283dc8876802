"""The plan model: sub-objective forms, durations, budget, and the transition table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from modulatio_d.core import markdown
from modulatio_d.core.errors import BadFile, TransitionRefused
from modulatio_d.core.plan import (
    CLAIMABLE,
    DAEMON_KEYS,
    FINAL,
    PERSON_SETS,
    TRANSITIONS,
    OnFailure,
    PlanStatus,
    StepKind,
    parse_duration,
    parse_plan,
    transition,
)

P = Path("ESS-P-001.md")

DESIGN_PLAN = """\
---
id: ESS-P-001
title: Weekly research digest
status: approved      # draft | approved | executing | paused | completed | failed | aborted
priority: 50          # higher runs first; ties: earliest approved_at, then id
sub_objectives:
  - Collect this week's sources           # text only: run by the default agent
  - objective: Summarize them
    agent: writer                          # an agent named in config or by a plugin
  - title: Build the digest
    run: make digest                       # shell: a string runs in sh -c, a list is argv
    timeout: 10m
    retries: 1
    on_failure: pause                      # pause (default) | abort | continue
  - title: Publish
    call: digest.publish:main              # a Python callable, run in a child process
  - run: [python3, -c, "print(1)", 7]
    rerun_after_crash: false
    cwd: sub
    env: {A: 1}
    on_failure: continue
budget: {tokens: 500000, cost_usd: 5.0, wall_clock: 2h}
current_index: 0      # daemon-owned from here down
reflection_log: []
---
Free text for people. The daemon never rewrites the body.
"""


def parse(text: str, expected_id: str | None = "ESS-P-001"):
    return parse_plan(markdown.load(P, text), expected_id=expected_id)


def test_the_design_example_parses():
    plan = parse(DESIGN_PLAN)
    assert plan.id == "ESS-P-001" and plan.status is PlanStatus.APPROVED and plan.priority == 50
    s = plan.sub_objectives
    assert [x.kind for x in s] == [StepKind.AGENT, StepKind.AGENT, StepKind.RUN, StepKind.CALL,
                                   StepKind.RUN]
    assert (s[0].title, s[0].objective, s[0].agent) == (
        "Collect this week's sources", "Collect this week's sources", "default")
    assert (s[1].title, s[1].agent) == ("Summarize them", "writer")
    assert (s[2].run, s[2].timeout, s[2].retries, s[2].on_failure) == (
        "make digest", 600.0, 1, OnFailure.PAUSE)
    assert (s[3].call, s[3].title) == ("digest.publish:main", "Publish")
    assert s[4].run == ("python3", "-c", "print(1)", "7")
    assert s[4].title == "python3 -c print(1) 7"
    assert (s[4].rerun_after_crash, s[4].cwd, s[4].env, s[4].on_failure) == (
        False, "sub", {"A": "1"}, OnFailure.CONTINUE)
    assert s[0].rerun_after_crash is True and s[0].timeout is None
    assert (plan.budget.tokens, plan.budget.cost_usd, plan.budget.wall_clock) == (
        500000, 5.0, 7200.0)
    assert (plan.current_index, plan.done, plan.total, plan.rev) == (0, 0, 5, 0)


def test_defaults_when_keys_are_left_out():
    plan = parse("---\nsub_objectives: [one]\n---\n")
    assert plan.id == "ESS-P-001"  # from the file name
    assert plan.title == "ESS-P-001"
    assert plan.status is PlanStatus.DRAFT
    assert (plan.priority, plan.current_index, plan.rev, plan.reflection_log) == (0, 0, 0, [])
    assert plan.budget.tokens is plan.budget.cost_usd is plan.budget.wall_clock is None
    assert plan.approved_at is None and plan.claim is None


def test_daemon_keys_and_with_keys():
    plan = parse(DESIGN_PLAN)
    assert set(plan.own_keys()) == set(DAEMON_KEYS)
    t = datetime(2025, 11, 4, 10, tzinfo=UTC)
    after = plan.with_keys({"status": "executing", "current_index": 2, "rev": 7,
                            "execution_started_at": "2025-11-04T10:00:00Z", "title": "ignored"})
    assert (after.status, after.current_index, after.rev, after.title) == (
        PlanStatus.EXECUTING, 2, 7, plan.title)
    assert after.execution_started_at == t
    assert after.done == 2 and plan.current_index == 0  # frozen: a new plan


def test_the_completed_index_counts_every_step_done():
    plan = parse("---\nsub_objectives: [a, b]\ncurrent_index: 2\nstatus: completed\n---\n")
    assert (plan.done, plan.total) == (2, 2)


@pytest.mark.parametrize(("text", "seconds"), [
    (90, 90.0), (1.5, 1.5), ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0),
    ("1d", 86400.0), ("1h30m", 5400.0), ("1h 30m", 5400.0), ("0.5h", 1800.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", [0, -5, "0s", "", "10x", "m", "10ms", True, None, [1], "1m1h"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


# --- the transition table ------------------------------------------------------

EXPECTED = {
    "approve": ({"draft", "paused"}, "approved"),
    "resume": ({"paused"}, "approved"),
    "pause": ({"approved", "executing"}, "paused"),
    "abort": ({"draft", "approved", "executing", "paused"}, "aborted"),
    "retry": ({"failed", "aborted"}, "approved"),
    "recover": ({"executing"}, "approved"),
    "rerun": ({"completed", "failed", "aborted"}, "approved"),
}


def test_the_table_is_the_one_documented():
    got = {a: ({s.value for s in froms}, to.value) for a, (froms, to) in TRANSITIONS.items()}
    assert got == EXPECTED
    assert {s.value for s in FINAL} == {"completed", "failed", "aborted"}
    assert {s.value for s in PERSON_SETS} == {"draft", "approved", "paused", "aborted"}
    assert {s.value for s in CLAIMABLE} == {"approved", "executing"}


def test_the_docs_table_matches_the_code():
    docs = Path(__file__).resolve().parents[2] / "docs" / "plan-file.md"
    text = docs.read_text()
    for action, (froms, to) in TRANSITIONS.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{action}`")), None)
        assert row, f"docs/plan-file.md has no row for {action}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert {s.strip(" `") for s in cells[2].split(",")} == {s.value for s in froms}, row
        assert cells[3].strip("` ") == to.value, row


@pytest.mark.parametrize("action", sorted(TRANSITIONS))
@pytest.mark.parametrize("status", list(PlanStatus))
def test_every_action_from_every_status(action, status):
    froms, to = EXPECTED[action]
    if status.value in froms:
        assert transition("X-P-001", status, action) is PlanStatus(to)
    else:
        with pytest.raises(TransitionRefused) as e:
            transition("X-P-001", status, action)
        message = str(e.value)
        assert message.startswith(f"plan X-P-001 is {status.value}: {action} works only from ")
        named = message.split(" works only from ", 1)[1].split(", ")
        assert set(named) == froms


def test_final_statuses_leave_only_by_retry_or_rerun():
    for status in FINAL:
        allowed = [a for a, (froms, _) in TRANSITIONS.items() if status in froms]
        assert allowed == (["retry", "rerun"] if status is not PlanStatus.COMPLETED
                           else ["rerun"])


# --- messages of the model ------------------------------------------------------

@pytest.mark.parametrize(("head", "message"), [
    ("id: ESS-P-001\nsub_objectives: [a]\npriority: high\n",
     "ESS-P-001.md:4: priority 'high' is not an integer"),
    ("sub_objectives: [a]\nrev: -1\n", "ESS-P-001.md:3: rev -1 is not a count"),
    ("sub_objectives: [a]\nreflection_log: {a: 1}\n",
     "ESS-P-001.md:3: reflection_log is not a list"),
    ("sub_objectives: [a]\nclaim: me\n", "ESS-P-001.md:3: claim is not a mapping"),
    ("sub_objectives: [a]\ntitle: [x]\n", "ESS-P-001.md:3: title must be a string"),
    ("sub_objectives: [a]\nbudget: 5\n", "ESS-P-001.md:3: budget must be a mapping"),
    ("sub_objectives: [a]\nbudget: {money: 5}\n",
     "ESS-P-001.md:3: budget has unknown keys ['money']"),
    ("sub_objectives: [a]\nbudget: {tokens: -1}\n",
     "ESS-P-001.md:3: budget tokens -1 is not a positive integer"),
    ("sub_objectives: [a]\nbudget: {cost_usd: 0}\n",
     "ESS-P-001.md:3: budget cost_usd 0 is not a positive number"),
    ("sub_objectives: [a]\nbudget: {wall_clock: soon}\n",
     "ESS-P-001.md:3: budget wall_clock: 'soon' is not a duration"),
    ("sub_objectives:\n  - a\n  - ''\n", "ESS-P-001.md:4: sub-objective 2 is empty"),
    ("sub_objectives:\n  - 5\n", "ESS-P-001.md:3: sub-objective 1 must be a text or a mapping"),
    ("sub_objectives:\n  - {agent: w}\n",
     "ESS-P-001.md:3: sub-objective 1 has no executor"),
    ("sub_objectives:\n  - {agent: w, run: x}\n",
     "ESS-P-001.md:3: sub-objective 1: agent needs an objective"),
    ("sub_objectives:\n  - {objective: '  '}\n",
     "ESS-P-001.md:3: sub-objective 1: objective must be a non-empty text"),
    ("sub_objectives:\n  - {objective: x, agent: ../w}\n",
     "ESS-P-001.md:3: sub-objective 1: agent '../w' is not a valid name"),
    ("sub_objectives:\n  - {run: ''}\n",
     "ESS-P-001.md:3: sub-objective 1: run must be a command string or a non-empty list"),
    ("sub_objectives:\n  - {run: [a, true]}\n",
     "ESS-P-001.md:3: sub-objective 1: run must be a command string"),
    ("sub_objectives:\n  - {call: os.system}\n",
     "ESS-P-001.md:3: sub-objective 1: call 'os.system' must be 'module.path:function'"),
    ("sub_objectives:\n  - a\n  - {run: x, timeout: never}\n",
     "ESS-P-001.md:4: sub-objective 2: timeout: 'never' is not a duration"),
    ("sub_objectives:\n  - {run: x, retries: -1}\n",
     "ESS-P-001.md:3: sub-objective 1: retries -1 is not a whole number >= 0"),
    ("sub_objectives:\n  - {run: x, on_failure: explode}\n",
     "ESS-P-001.md:3: sub-objective 1: on_failure 'explode' is unknown"),
    ("sub_objectives:\n  - {run: x, rerun_after_crash: 'no'}\n",
     "ESS-P-001.md:3: sub-objective 1: rerun_after_crash must be true or false"),
    ("sub_objectives:\n  - {run: x, env: [A]}\n",
     "ESS-P-001.md:3: sub-objective 1: env must be a mapping"),
])
def test_model_messages_name_the_line(head, message):
    with pytest.raises(BadFile) as e:
        parse(f"---\n{head}---\nbody\n")
    assert str(e.value).startswith(message), str(e.value)

"""Usage records and budgets with real daemons: steps' lines folded into
`<plan-id>.usage.jsonl`, a warning at 80% of a budget and a pause with a critical ticket
past 100% (usage.check/read_lines on their own: tests/unit/test_usage_records.py)."""

from __future__ import annotations

import json

import pytest
from helpers import plan, write_plan

pytestmark = pytest.mark.timeout(30)
PID = "P-P-001"


# --- with a daemon -----------------------------------------------------------------


def line(tokens_in: int, tokens_out: int, cost: float = 0.0, **extra) -> str:
    return json.dumps({"model": "m", "input_tokens": tokens_in, "output_tokens": tokens_out,
                       "cost_usd": cost, "call_id": f"c{tokens_in}", "agent_id": "test",
                       **extra})


def test_usage_lines_land_in_the_plan_usage_file(dvault, daemons):
    write_plan(dvault, PID, [
        "Summarise the week",  # the default agent: the built-in mock
        {"title": "own lines", "run": dvault.step(usage=[line(10, 5, 0.5), "{oops",
                                                         '{"input_tokens": -1}',
                                                         line(1, 1, timestamp="T")])},
        {"title": "silent", "run": "true"},
    ])
    d = daemons("--once", "--log-format", "json")
    assert d.wait(15) == 0, d.log()
    assert plan(dvault, PID).status.value == "completed"
    rows = [json.loads(x) for x in
            dvault.plan_path(PID).with_suffix(".usage.jsonl").read_text().splitlines()]
    assert [(r["step_index"], r["attempt"], r["plan_id"]) for r in rows] == [
        (0, 1, PID), (1, 1, PID), (1, 1, PID), (2, 1, PID)]
    keys = {"timestamp", "model", "input_tokens", "output_tokens", "cost_usd", "call_id",
            "agent_id", "plan_id", "step_index", "attempt", "duration_s"}
    assert all(keys <= set(r) for r in rows)
    mock = rows[0]
    assert mock["model"] == "mock-1" and mock["input_tokens"] > 0
    assert mock["call_id"] == f"mock-{PID}-0-1"
    assert (rows[1]["input_tokens"], rows[1]["cost_usd"]) == (10, 0.5)
    assert rows[2]["timestamp"] == "T"  # a step's own fields are kept
    # A step that reported nothing still gets its one line per executor call.
    assert (rows[3]["input_tokens"], rows[3]["output_tokens"], rows[3]["call_id"]) == \
        (0, 0, f"{PID}-2-1")
    skipped = [r for r in d.json_log() if r["logger"] == "modulatio.usage"]
    assert [r["level"] for r in skipped] == ["WARNING", "WARNING"]
    assert all("0002-01.usage.jsonl:" in r["message"] and "skipped" in r["message"]
               for r in skipped)


def test_budget_warns_at_80_percent_and_pauses_past_100(dvault, daemons):
    write_plan(dvault, PID, [
        {"title": "big", "run": dvault.step(usage=[line(60, 25)])},      # 85 of 100
        {"title": "bigger", "run": dvault.step(usage=[line(15, 5)])},    # 105 of 100
        {"title": "never", "run": "touch never"},
    ], extra="budget: {tokens: 100, cost_usd: 5.0}")
    d = daemons("--once", "--log-format", "json")
    assert d.wait(15) == 0, d.log()
    p = plan(dvault, PID)
    assert p.status.value == "paused" and p.current_index == 2
    assert p.last_error == "budget tokens exhausted: 105 of 100"
    assert not (dvault.root / "P" / "never").exists()
    warns = [r for r in d.json_log() if r["logger"] == "modulatio.context_budget"]
    assert len(warns) == 1, warns  # once, not before every step
    w = warns[0]
    assert w["level"] == "WARNING" and w["modulatio_event"] == "context_budget_soft_warn"
    assert (w["plan_id"], w["budget"], w["used"], w["limit"]) == (PID, "tokens", 85, 100)
    tickets = list((dvault.root / "P" / "tickets").glob("*.md"))
    assert len(tickets) == 1
    text = tickets[0].read_text()
    assert "severity: critical" in text and "decision: pending" in text
    assert "budget tokens exhausted" in text


def _resumed_plan(dvault, plan_id: str, spent_s: float) -> None:
    """A plan first started a year ago (paused most of that time) whose attempts took spent_s."""
    dvault.plan_path(plan_id).write_text(
        f"---\nid: {plan_id}\nstatus: approved\nsub_objectives:\n"
        f"  - {{title: old, run: 'true'}}\n  - {{title: new, run: touch {plan_id}-ran}}\n"
        f"budget: {{wall_clock: 1h}}\ncurrent_index: 1\n"
        f"execution_started_at: 2025-11-22T00:00:00Z\nreflection_log:\n"
        f"  - {{index: 0, title: old, attempt: 1, outcome: ok, duration_s: {spent_s}, "
        f"decision: continue}}\n---\n")


def test_wall_clock_budget_counts_the_attempts_not_the_time_paused(dvault, daemons):
    _resumed_plan(dvault, "P-P-010", 3000.0)   # 50 of 60 minutes: runs, with a warning
    _resumed_plan(dvault, "P-P-011", 3700.0)   # past the hour: pauses before the step
    d = daemons("--once", "--log-format", "json")
    assert d.wait(15) == 0, d.log()
    assert plan(dvault, "P-P-010").status.value == "completed"
    assert (dvault.root / "P" / "P-P-010-ran").exists()
    over = plan(dvault, "P-P-011")
    assert over.status.value == "paused" and over.current_index == 1
    assert over.last_error == "budget wall_clock exhausted: 3700 of 3600"
    assert not (dvault.root / "P" / "P-P-011-ran").exists()
    warns = [r for r in d.json_log() if r["logger"] == "modulatio.context_budget"]
    assert [(w["plan_id"], w["budget"]) for w in warns] == [("P-P-010", "wall_clock")]

"""A running plan's usage and budget (daemon/budget.py): usage lines folded in, the soft
warning once at 80%, the pause past 100%, and running time counted from the attempts."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

from fakes import FakeClock, write_plan

from modulatio_d.core.verdict import Outcome
from modulatio_d.daemon.attempt import Attempt
from modulatio_d.daemon.budget import Budget
from modulatio_d.store.plan_file import read_plan


def attempt(clock: FakeClock, seconds: float = 2.5) -> Attempt:
    return Attempt(Outcome.OK, "exit 0", clock.wall(), clock.wall() + timedelta(seconds=seconds),
                   Path("/nowhere.log"), "")


def test_usage_lines_are_completed_and_appended_and_an_empty_report_is_one_line(vault, tmp_path):
    clock = FakeClock()
    path = write_plan(vault, ["one", "two"])
    plan = read_plan(vault, path).plan
    budget = Budget(path)
    scratch = tmp_path / "0-1.usage.jsonl"
    scratch.write_text(json.dumps({"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.5,
                                   "model": "m"}) + "\n")
    budget.fold(plan, plan.sub_objectives[0], 1, attempt(clock), scratch)
    budget.fold(plan, plan.sub_objectives[1], 1, attempt(clock), tmp_path / "none.jsonl")
    assert budget.totals.tokens == 15 and not budget.usage_path.exists()  # counted, pending
    budget.flush()
    assert budget.pending == []
    lines = [json.loads(ln) for ln in budget.usage_path.read_text().splitlines()]
    assert [(ln["step_index"], ln["input_tokens"], ln["duration_s"]) for ln in lines] == [
        (0, 10, 2.5), (1, 0, 2.5)]
    assert lines[1]["call_id"] == "P-P-001-1-1" and lines[1]["agent_id"] == "default"
    assert budget.totals.tokens == 15 and Budget(path).totals.tokens == 15  # kept on disk


def test_the_soft_warning_once_at_80_percent_then_a_pause_past_the_limit(vault, tmp_path,
                                                                         caplog):
    clock = FakeClock()
    path = write_plan(vault, ["one"], extra="budget: {tokens: 100}")
    plan = read_plan(vault, path).plan
    budget = Budget(path)
    scratch = tmp_path / "u.jsonl"
    scratch.write_text(json.dumps({"input_tokens": 80}) + "\n")
    budget.fold(plan, plan.sub_objectives[0], 1, attempt(clock), scratch)
    with caplog.at_level(logging.WARNING, "modulatio.context_budget"):
        assert budget.exhausted(plan) is None
        assert budget.exhausted(plan) is None
    assert [r.getMessage() for r in caplog.records] == [
        "plan P-P-001 used 80% of its tokens budget (80 of 100)"]
    scratch.write_text(json.dumps({"input_tokens": 21}) + "\n")
    budget.fold(plan, plan.sub_objectives[0], 2, attempt(clock), scratch)
    reason, details = budget.exhausted(plan)
    assert reason == "budget tokens exhausted: 101 of 100"
    assert "Raise `budget` in the plan" in details


def test_running_time_is_the_time_the_attempts_took(vault):
    path = write_plan(vault, ["one"], extra="budget: {wall_clock: 10s}")
    plan = read_plan(vault, path).plan
    budget = Budget(path)
    log = [{"duration_s": 6}, {"duration_s": 4}]
    assert budget.spent(plan, log) == [("wall_clock", 10.0, 10.0)]
    assert budget.room_after(plan, log)
    assert not budget.room_after(plan, [*log, {"duration_s": 0.5}])
    assert budget.spent(plan, [*log, {"duration_s": None}]) == [("wall_clock", 10.0, 10.0)]


def test_a_failed_append_stays_pending_and_is_written_once_when_the_disk_is_back(
        vault, tmp_path, monkeypatch):
    """EIO on a write (nothing written), then EIO on the fsync after a write that went
    through: each block reaches the file exactly once, in order."""
    import errno
    import os

    from modulatio_d.store import usage

    clock = FakeClock()
    path = write_plan(vault, ["one", "two", "three"])
    plan = read_plan(vault, path).plan
    budget = Budget(path)
    faults = ["write", "fsync"]  # the next calls of these fail, in this order
    real = {"write": os.write, "fsync": os.fsync}

    def faulty(name):
        def call(*args):
            if faults and faults[0] == name:
                faults.pop(0)
                raise OSError(errno.EIO, "Input/output error")
            return real[name](*args)
        return call

    monkeypatch.setattr(usage.os, "write", faulty("write"))
    monkeypatch.setattr(usage.os, "fsync", faulty("fsync"))
    outcomes = []
    for i, step in enumerate(plan.sub_objectives):
        budget.fold(plan, step, 1, attempt(clock), tmp_path / f"none-{i}.jsonl")
        try:
            budget.flush()
            outcomes.append(len(budget.pending_lines()))
        except OSError:
            outcomes.append(f"EIO, {len(budget.pending_lines())} pending")
    assert outcomes == ["EIO, 1 pending", "EIO, 2 pending", 0]
    lines = [json.loads(ln) for ln in budget.usage_path.read_text().splitlines()]
    assert [ln["step_index"] for ln in lines] == [0, 1, 2]  # step 0's block once
    assert Budget(path).totals.calls == 3 == budget.totals.calls

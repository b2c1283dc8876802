"""A record repairs only the plan it was written for (store/owned_keys.py, `belongs`).

A stale editor buffer of the plan is still repaired, whatever the person changed in
it; a new plan given the same id (the project folder deleted, the state kept) is run
as it stands.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from modulatio_d.core.plan import PlanStatus
from modulatio_d.ops.plans import new_plan, next_plan_number
from modulatio_d.store import owned_keys, record_lines
from modulatio_d.store.plan_file import HeldPlan, read_plan

NOW = datetime(2025, 11, 4, 10, 0, tzinfo=UTC)
HAND = """\
---
id: P-P-001
title: Weekly digest
status: approved
priority: 50
{born}sub_objectives:
  - Collect sources
  - {{run: make digest}}
---
Notes for people.
"""


def run_to_the_end(vault, text: str):
    """The plan written, claimed and completed by a holder; its path and first text."""
    path = vault.plans_dir("P") / "P-P-001.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    held = HeldPlan(vault, path)
    held.update({"status": "executing", "execution_started_at": NOW,
                 "claim": {"host": "h", "pid": 1, "token": 1, "claimed_at": NOW}})
    held.update({"status": "completed", "current_index": 2, "completed_at": NOW,
                 "claim": None})
    assert held.record.rev == 2
    return path


def reopen(vault, path, text: str):
    path.write_text(text)
    seen = []
    held = HeldPlan(vault, path, notify=lambda name, **kw: seen.append(name))
    return held, seen


@pytest.mark.parametrize("born", ["", "created_at: 2025-11-01T09:00:00Z\n"])
@pytest.mark.parametrize("edit", [("Weekly digest", "Weekly digest, v2"),
                                  ("Collect sources", "Collect more sources")])
def test_a_stale_buffer_of_the_same_plan_is_still_repaired(vault, born, edit):
    first = HAND.format(born=born)
    path = run_to_the_end(vault, first)
    held, seen = reopen(vault, path, first.replace(*edit))  # from before the first write
    assert seen == ["stale_save_repaired"]
    assert (held.plan.status, held.plan.current_index, held.plan.rev) == (
        PlanStatus.COMPLETED, 2, 3)


def test_a_new_plan_written_by_hand_with_the_id_is_run(vault):
    path = run_to_the_end(vault, HAND.format(born=""))
    new = HAND.format(born="").replace("Weekly digest", "Monthly report") \
        .replace("Collect sources", "Count the sales")
    held, seen = reopen(vault, path, new)
    assert seen == ["record_of_another_plan"]
    assert (held.plan.status, held.plan.current_index, held.record) == (
        PlanStatus.APPROVED, 0, None)
    plan = held.update({"status": "executing"})
    assert plan.rev == 3  # past the old record's: a rev of an id never goes back
    record = owned_keys.load(held.record_path)
    assert record.birth["title"] == "Monthly report"
    assert record.status_by_rev == [(0, "approved"), (3, "executing")]
    assert read_plan(vault, path).plan.title == "Monthly report"


def test_a_new_plan_with_a_fresh_created_at_is_run_even_with_the_same_steps(vault):
    path = run_to_the_end(vault, HAND.format(born="created_at: 2025-11-01T09:00:00Z\n"))
    held, seen = reopen(vault, path, HAND.format(born="created_at: 2025-12-01T09:00:00Z\n"))
    assert seen == ["record_of_another_plan"]
    assert held.plan.status is PlanStatus.APPROVED and held.plan.rev == 0


def test_a_file_a_daemon_wrote_is_the_records_plan(vault):
    path = run_to_the_end(vault, HAND.format(born=""))
    record = owned_keys.load(vault.record_path("P", "P-P-001"))
    stale = replace(read_plan(vault, path).plan, rev=1, title="Other", sub_objectives=())
    assert owned_keys.belongs(stale, record)
    assert not owned_keys.belongs(replace(stale, rev=0), record)


def test_a_record_from_before_birth_repairs_as_it_did(vault):
    first = HAND.format(born="")
    path = run_to_the_end(vault, first)
    record_path = vault.record_path("P", "P-P-001")
    data = record_lines.parse(record_path.read_bytes())[0]
    del data["birth"]
    record_path.write_text(json.dumps(data))  # the one-object form of older versions
    new = first.replace("Weekly digest", "Monthly report").replace("Collect", "Count")
    held, seen = reopen(vault, path, new)
    assert seen == ["stale_save_repaired"] and held.plan.status is PlanStatus.COMPLETED
    assert owned_keys.load(record_path).birth is not None  # the next write gives it one


def test_plan_new_never_reuses_an_id_with_state_left(vault, monkeypatch):
    monkeypatch.setattr(owned_keys, "INLINE", 0)  # the log in its own file (no short log)
    plan_id, _ = new_plan(vault, "P", "First", [], approve=True, now=NOW)
    path = vault.plans_dir("P") / f"{plan_id}.md"
    held = HeldPlan(vault, path)
    held.update({"status": "executing", "reflection_log": [
        {"index": 0, "title": "a", "attempt": 1, "outcome": "ok", "decision": "continue"}]})
    crashes = vault.records_dir("P") / "crashes"
    crashes.mkdir()
    (crashes / "P-P-007.json").write_text("{}")
    shutil.rmtree(vault.plans_dir("P").parent)  # the project deleted, the state kept
    assert next_plan_number(vault, "P") == 8
    vault.record_path("P", plan_id).unlink()  # its reflection log file alone counts too
    (crashes / "P-P-007.json").unlink()
    assert owned_keys.log_path(vault.record_path("P", plan_id)).exists()
    assert next_plan_number(vault, "P") == 2

"""Plan operations (ops/plans.py) in this process on a real vault: new plans and their
numbers, status changes with the lock free, refused transitions. With another process
holding the lock: tests/e2e/test_actions.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from modulatio_d.core.errors import NotFound, TransitionRefused, UsageError
from modulatio_d.core.plan import PlanStatus
from modulatio_d.ops import plans
from modulatio_d.ops.plans import new_plan, next_plan_number
from modulatio_d.store import events
from modulatio_d.store.lock import FileLock, lock_path
from modulatio_d.store.plan_file import change_status, read_plan

NOW = datetime(2025, 11, 4, 10, 0, tzinfo=UTC)


@pytest.fixture
def log(vault):
    return events.EventLog(vault.events_path, clock=lambda: NOW)


def test_new_plan_with_steps_in_order(vault):
    plan_id, path = new_plan(vault, "SALES", "Weekly: follow-up",
                             [("run", "make a"), ("objective", "Write it"), ("run", "make b")],
                             approve=False, now=NOW)
    assert (plan_id, path) == ("SALES-P-001", vault.root / "SALES" / "plans" / "SALES-P-001.md")
    assert path.read_text() == (
        "---\nid: SALES-P-001\ntitle: \"Weekly: follow-up\"\nstatus: draft\npriority: 50\n"
        "created_at: 2025-11-04T10:00:00Z\nsub_objectives:\n  - {run: make a}\n  - Write it\n"
        "  - {run: make b}\ncurrent_index: 0\nreflection_log: []\n---\n\n")
    plan = read_plan(vault, path).plan
    assert [s.kind.value for s in plan.sub_objectives] == ["run", "agent", "run"]


def test_new_plan_approved_and_title_only(vault):
    _plan_id, path = new_plan(vault, "P", "  Do the thing  ", [], approve=True, now=NOW)
    plan = read_plan(vault, path).plan
    assert plan.status is PlanStatus.APPROVED and plan.approved_at == NOW
    assert [s.objective for s in plan.sub_objectives] == ["Do the thing"]
    with pytest.raises(UsageError, match="the plan needs a title"):
        new_plan(vault, "P", " ", [], approve=False, now=NOW)


def test_numbers_skip_files_and_records_of_deleted_plans(vault):
    folder = vault.plans_dir("P")
    folder.mkdir(parents=True)
    assert next_plan_number(vault, "P") == 1
    (folder / "P-P-007.md").write_text("")
    (folder / "Q-P-050.md").write_text("")  # another project's prefix
    (folder / "P-P-notanumber.md").write_text("")
    assert next_plan_number(vault, "P") == 8
    record = vault.record_path("P", "P-P-012")
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    assert next_plan_number(vault, "P") == 13
    assert new_plan(vault, "P", "T", [], False, NOW)[0] == "P-P-013"
    assert next_plan_number(vault, "P") == 14
    (folder / "P-P-1000.md").write_text("")
    assert new_plan(vault, "P", "T", [], False, NOW)[0] == "P-P-1001"


def test_a_taken_number_is_skipped_not_overwritten(vault, monkeypatch):
    folder = vault.plans_dir("P")
    folder.mkdir(parents=True)
    (folder / "P-P-001.md").write_text("someone else's\n")
    monkeypatch.setattr(plans, "next_plan_number", lambda v, p: 1)  # a racer's stale count
    assert new_plan(vault, "P", "T", [], False, NOW)[0] == "P-P-002"
    assert (folder / "P-P-001.md").read_text() == "someone else's\n"


def test_status_change_with_the_lock_free_writes_as_holder(vault, log):
    plan_id, path = new_plan(vault, "P", "T", [("run", "true")], approve=False, now=NOW)
    plan = change_status(vault, plan_id, "approve", NOW, log)
    assert plan.status is PlanStatus.APPROVED and plan.rev == 1
    on_disk = read_plan(vault, path).plan
    assert (on_disk.status, on_disk.rev, on_disk.approved_at) == (PlanStatus.APPROVED, 1, NOW)
    assert json.loads(vault.record_path("P", plan_id).read_text())["rev"] == 1
    assert lock_path(path).exists()
    probe = FileLock(lock_path(path))
    assert probe.try_acquire()  # released afterwards
    probe.release()
    last = events.read(vault.events_path)[-1]
    assert {k: last[k] for k in ("event", "plan", "action", "previous", "status", "by")} == {
        "event": "status_changed", "plan": plan_id, "action": "approve", "previous": "draft",
        "status": "approved", "by": "command"}


def test_refused_transitions_leave_the_file(vault, log):
    plan_id, path = new_plan(vault, "P", "T", [], approve=False, now=NOW)
    before = path.read_bytes()
    for action, allowed in (("pause", "approved, executing"), ("resume", "paused"),
                            ("retry", "failed, aborted"), ("recover", "executing")):
        with pytest.raises(TransitionRefused) as e:
            change_status(vault, plan_id, action, NOW, log)
        assert str(e.value) == f"plan {plan_id} is draft: {action} works only from {allowed}"
    assert path.read_bytes() == before
    with pytest.raises(NotFound):
        change_status(vault, "P-P-999", "approve", NOW, log)


def test_approve_from_paused_keeps_approved_at(vault, log):
    plan_id, path = new_plan(vault, "P", "T", [], approve=False, now=NOW)
    change_status(vault, plan_id, "approve", NOW, log)
    change_status(vault, plan_id, "pause", NOW, log)
    later = datetime(2025, 12, 1, tzinfo=UTC)
    plan = change_status(vault, plan_id, "approve", later, log)
    assert plan.approved_at == NOW and plan.rev == 3
    assert read_plan(vault, path).plan.approved_at == NOW

"""A person editing the steps of a running plan (daemon/edits.py, core/digest.py)."""

from __future__ import annotations

import json

import pytest
from helpers import cli, plan, save_like_vim, settled, starts, wait_ticket, write_plan
from waiting import wait_for

pytestmark = pytest.mark.timeout(60)
PID = "P-P-001"


def steps(dv, n: int) -> list[dict]:
    return [{"title": f"step {chr(65 + i)}", "run": dv.step(go=dv.root / f"go-{i}")}
            for i in range(n)]


def insert_step(path, at: int, step: dict) -> None:
    """A person's save with `step` inserted as item `at` of sub_objectives."""
    lines = path.read_text().splitlines(keepends=True)
    first = lines.index("sub_objectives:\n") + 1
    lines.insert(first + at, "  - " + json.dumps(step) + "\n")
    save_like_vim(path, "".join(lines))


def test_a_step_inserted_above_the_running_one_pauses_with_the_diff(dvault, daemons):
    path = write_plan(dvault, PID, steps(dvault, 3))
    d = daemons(tick=0.5)
    (dvault.root / "go-0").touch()
    wait_for(lambda: starts(dvault, 1), 15, "step B started", diag=d.log)
    insert_step(path, 0, {"title": "inserted", "run": "true"})
    (dvault.root / "go-1").touch()

    p = wait_for(settled(dvault, PID, "paused"), 15, "paused at the boundary", diag=d.log)
    assert p.current_index == 2 and p.total == 4
    assert "inserted or removed" in p.last_error and p.steps_digest is None
    assert len(starts(dvault, 1)) == 1 and starts(dvault, 2) == []  # nothing ran twice
    ticket = wait_ticket(dvault, PID).read_text()
    assert "```diff" in ticket and "+step 1: inserted" in ticket, ticket
    assert "current_index: N-1" in ticket

    # the person says where to go on: step C, now the 4th (current_index 3)
    save_like_vim(path, path.read_text().replace("current_index: 2", "current_index: 3"))
    assert cli(dvault, "plan", "resume", PID).code == 0
    (dvault.root / "go-2").touch()
    p = wait_for(settled(dvault, PID, "completed"), 15, "completed", diag=d.log)
    assert [e["title"] for e in p.reflection_log] == ["step A", "step B", "step C"]
    assert len(starts(dvault, 3)) == 1  # step C ran once, at its new place
    assert p.progress.startswith("4/4 done · completed")


def test_a_step_added_after_the_running_one_is_taken(dvault, daemons):
    path = write_plan(dvault, PID, steps(dvault, 2))  # approved by hand: not bound
    d = daemons(tick=0.5)
    wait_for(lambda: starts(dvault, 0), 15, "step A started", diag=d.log)
    insert_step(path, 2, {"title": "added", "run": "true"})
    (dvault.root / "go-0").touch()
    (dvault.root / "go-1").touch()
    p = wait_for(settled(dvault, PID, "completed"), 15, "completed", diag=d.log)
    assert [e["title"] for e in p.reflection_log] == ["step A", "step B", "added"]
    assert not (dvault.root / "P" / "tickets").exists() or \
        not list((dvault.root / "P" / "tickets").glob("*.md"))


def test_an_approval_is_bound_to_its_steps(dvault, daemons):
    path = write_plan(dvault, PID, steps(dvault, 2), status="draft")
    assert cli(dvault, "plan", "approve", PID).code == 0
    assert plan(dvault, PID).approved_digest.startswith("2/2 ")
    d = daemons(tick=0.5)
    wait_for(lambda: starts(dvault, 0), 15, "step A started", diag=d.log)
    insert_step(path, 2, {"title": "added", "run": "true"})  # after the running one
    (dvault.root / "go-0").touch()
    p = wait_for(settled(dvault, PID, "paused"), 15, "paused for a new approval", diag=d.log)
    assert p.current_index == 1 and "changed since the plan was approved" in p.last_error
    assert starts(dvault, 1) == []
    r = cli(dvault, "status")
    assert "changed since the plan was approved" in r.out, r.out

    assert cli(dvault, "plan", "approve", PID).code == 0  # approves the steps as they are
    assert plan(dvault, PID).approved_digest.startswith("3/3 ")
    (dvault.root / "go-1").touch()
    p = wait_for(settled(dvault, PID, "completed"), 15, "completed", diag=d.log)
    assert [e["title"] for e in p.reflection_log] == ["step A", "step B", "added"]

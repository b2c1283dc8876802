"""Several daemons racing over many plans: each sub-objective runs exactly once."""

from __future__ import annotations

import json
import signal
from collections import defaultdict

import pytest
from helpers import cli, events, plan, starts, wait_started, write_plan
from waiting import wait_for

from modulatio_d.store.lock import lock_path

pytestmark = pytest.mark.timeout(60)

STEPS = 3


@pytest.mark.parametrize("n_daemons, n_plans", [(2, 12), (4, 30), (8, 24)])
def test_racing_daemons_run_every_step_exactly_once(dvault, daemons, n_daemons, n_plans):
    marks = dvault.root / "marks"
    marks.mkdir()
    ids = [f"P-P-{n:03d}" for n in range(1, n_plans + 1)]
    procs = [daemons(tick=0.5) for _ in range(n_daemons)]
    for p in procs:
        wait_started(p, dvault)
    for plan_id in ids:  # every daemon is up and wakes on each of these
        # `>>` opens with O_APPEND: lines from concurrent steps never tear.
        step = f'echo "$MODULATIO_PLAN_ID $MODULATIO_STEP_INDEX $$" >> {marks}/{plan_id}'
        write_plan(dvault, plan_id, [{"title": f"s{i}", "run": step} for i in range(STEPS)],
                   priority=int(plan_id[-3:]) % 3)

    def all_done():
        return all(plan(dvault, i).status.value == "completed" for i in ids)

    wait_for(all_done, 40, "every plan completed",
             diag=lambda: "\n".join(p.log()[-2000:] for p in procs))
    for p in procs:
        p.signal(signal.SIGTERM)
    assert [p.wait(10) for p in procs] == [0] * n_daemons

    runners = set()
    for plan_id in ids:
        lines = (marks / plan_id).read_text().splitlines()
        assert [ln.split()[:2] for ln in lines] == [[plan_id, str(i)] for i in range(STEPS)], \
            f"{plan_id} ran its steps as {lines}"
        runners.update(ln.split()[2] for ln in lines)
        p = plan(dvault, plan_id)
        assert p.current_index == STEPS and p.in_flight is None
        assert [e["index"] for e in p.reflection_log] == list(range(STEPS))
        assert {e["outcome"] for e in p.reflection_log} == {"ok"}

    # Every event line is whole JSON (written with one O_APPEND write each).
    raw = dvault.vault.events_path.read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in raw)

    # One claim per plan, tokens unique and increasing, and the token in the file agrees.
    tokens = defaultdict(list)
    for e in events(dvault):
        if e["event"] in ("claimed", "orphan_recovered"):
            tokens[e["plan"]].append(e["token"])
    for plan_id in ids:
        assert tokens[plan_id] == [1], (plan_id, tokens[plan_id])
        done = plan(dvault, plan_id)  # ended: no claim left; its log keeps the token
        assert done.claim is None and done.last_token == 1
    starts = events(dvault, "step_started")
    assert len(starts) == n_plans * STEPS
    assert len({(e["plan"], e["index"]) for e in starts}) == n_plans * STEPS
    # Work was spread: more than one daemon ran plans.
    assert len({e["pid"] for e in events(dvault, "claimed")}) > 1


def test_tokens_increase_over_successive_claims(dvault, daemons):
    """A plan claimed again (after a pause and an approve) gets the next token."""
    go = dvault.root / "go"
    write_plan(dvault, "P-P-001", [{"run": dvault.step(go=go)}, {"run": "true"}])
    d = daemons(tick=0.5)
    # The step's own start mark, not `in_flight`: the claim writes that before the step
    # starts, and a pause seen before the start leaves the step unrun (run under token 2).
    wait_for(lambda: starts(dvault, 0), 10, "step 0 started", diag=d.log)
    assert plan(dvault, "P-P-001").claim["token"] == 1
    assert cli(dvault, "plan", "pause", "P-P-001").code == 0
    go.touch()
    wait_for(lambda: plan(dvault, "P-P-001").status.value == "paused"
             and not plan(dvault, "P-P-001").in_flight, 10, "paused", diag=d.log)
    assert cli(dvault, "plan", "resume", "P-P-001").code == 0
    wait_for(lambda: plan(dvault, "P-P-001").status.value == "completed", 10, "completed",
             diag=d.log)
    claims = [e["token"] for e in events(dvault, "claimed", plan="P-P-001")]
    assert claims == [1, 2]
    assert plan(dvault, "P-P-001").claim is None  # ended
    assert [e["token"] for e in plan(dvault, "P-P-001").reflection_log] == [1, 2]


def test_pickup_by_inotify_long_before_the_tick(dvault, daemons):
    """`modulatio plan approve` wakes the daemon while it still holds the plan's lock; the
    daemon must not then sleep a whole tick before claiming it. The tick is an hour, so no
    timed tick falls inside this test: a plan that runs at all was claimed on a wake-up,
    and the event log shows each approval followed by its claim and its end before the
    next approval."""
    d = daemons(tick=3600)
    wait_started(d, dvault)
    ids = [f"P-P-00{n}" for n in range(1, 6)]
    for plan_id in ids:
        write_plan(dvault, plan_id, [{"run": "true"}], status="draft")
    for plan_id in ids:
        r = cli(dvault, "plan", "approve", plan_id)
        assert r.code == 0, r.err
        # The completion's event line follows the plan's write: wait for the line.
        wait_for(lambda plan_id=plan_id: any(
            e["event"] == "status_changed" and e["plan"] == plan_id
            and e.get("status") == "completed" for e in events(dvault)), 20,
            "run on the wake-up, not the hour tick", diag=d.log)
    seen = [(e["event"], e["plan"], e.get("by"), e.get("status")) for e in events(dvault)
            if e["event"] in ("status_changed", "claimed")]
    assert seen == [step for plan_id in ids for step in (
        ("status_changed", plan_id, "command", "approved"),
        ("claimed", plan_id, None, None),
        ("status_changed", plan_id, "daemon", "executing"),
        ("status_changed", plan_id, "daemon", "completed"))]
    p = plan(dvault, ids[0])
    assert p.claim is None and p.last_token == 1  # ended: the claim goes, the log keeps it
    assert [e["pid"] for e in events(dvault, "claimed", plan=ids[0])] == [d.pid]
    assert p.approved_at is not None and p.execution_started_at is not None
    assert lock_path(dvault.plan_path(ids[0])).exists()  # lock files are never deleted


def test_order_priority_then_approved_at_then_id_and_project_filter(dvault, daemons):
    (dvault.root / "Q" / "plans").mkdir(parents=True)
    steps = [{"run": "true"}]
    write_plan(dvault, "P-P-001", steps, priority=10)
    write_plan(dvault, "P-P-002", steps, priority=90)
    write_plan(dvault, "P-P-003", steps, priority=50,
               extra="approved_at: 2026-01-02T00:00:00Z")
    write_plan(dvault, "P-P-004", steps, priority=50,
               extra="approved_at: 2026-01-01T00:00:00Z")
    write_plan(dvault, "P-P-006", steps, priority=50,
               extra="approved_at: 2026-01-01T00:00:00Z")
    write_plan(dvault, "P-P-005", steps, priority=50,
               extra="approved_at: 2026-01-01T00:00:00Z")
    other = dvault.root / "Q" / "plans" / "Q-P-001.md"
    other.write_text(dvault.plan_path("P-P-001").read_text().replace("P-P-001", "Q-P-001")
                     .replace("priority: 10", "priority: 99"))
    d = daemons("--once", "--project", "P")
    assert d.wait(15) == 0, d.log()
    order = [e["plan"] for e in events(dvault, "claimed")]
    assert order == ["P-P-002", "P-P-004", "P-P-005", "P-P-006", "P-P-003", "P-P-001"]
    assert "status: approved" in other.read_text()  # not served: untouched


def test_execution_started_at_is_kept_across_claims(dvault, daemons):
    go = dvault.root / "go"
    write_plan(dvault, "P-P-001", [{"run": dvault.step(go=go)}, {"run": "true"}])
    d1 = daemons(tick=0.3)
    wait_for(lambda: plan(dvault, "P-P-001").in_flight, 10, "in flight", diag=d1.log)
    first = plan(dvault, "P-P-001").execution_started_at
    d1.kill()
    go.touch()
    d2 = daemons(tick=0.3)
    wait_for(lambda: plan(dvault, "P-P-001").status.value == "completed", 10, "completed",
             diag=d2.log)
    p = plan(dvault, "P-P-001")
    assert p.execution_started_at == first and p.last_token == 2 and p.claim is None
    assert p.completed_at >= first
    recovered = events(dvault, "orphan_recovered", plan="P-P-001")
    assert len(recovered) == 1 and recovered[0]["previous_claim"]["pid"] == d1.pid
    assert recovered[0]["pid"] == d2.pid and recovered[0]["token"] == 2

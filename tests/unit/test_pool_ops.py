"""ops/pool.py's queue counts from a survey, with and without the control part (pause,
slots) a survey may carry; and the supervisor's choice of workers to drain."""

from __future__ import annotations

from types import SimpleNamespace

from modulatio_d.ops.pool import queue_counts


def _survey(control=None):
    plans = [{"id": "A-P-001", "project": "A", "status": "approved"},
             {"id": "A-P-002", "project": "A", "status": "executing"},
             {"id": "B-P-001", "project": "B", "status": "approved"},
             {"id": "B-P-002", "project": "B", "status": "paused"}]
    by_status = {}
    for p in plans:
        by_status[p["status"]] = by_status.get(p["status"], 0) + 1
    s = SimpleNamespace(plans=plans, counts=lambda: {"by_status": by_status})
    if control is not None:
        s.control = control
    return s


def test_without_pause_or_slots_those_counts_are_unknown():
    assert queue_counts(_survey()) == {"approved": 2, "executing": 1, "paused_plans": 1,
                                       "waiting_for_slot": None, "paused_by_pause": None}


def test_a_paused_project_holds_its_approved_plans_and_slots_are_counted():
    q = queue_counts(_survey({"pause": {"vault": None, "projects": {"B": {}}},
                              "waiting_for_slot": ["A-P-001"]}))
    assert (q["paused_by_pause"], q["waiting_for_slot"]) == (1, 1)
    q = queue_counts(_survey({"pause": {"vault": {"by": "ops"}, "projects": {}},
                              "waiting_for_slot": []}))
    assert (q["paused_by_pause"], q["waiting_for_slot"]) == (2, 0)


def test_a_refused_pause_file_is_not_taken_for_no_pause():
    q = queue_counts(_survey({"pause": {"unreadable": "pause.yaml:3: bad"},
                              "waiting_for_slot": []}))
    assert q["paused_by_pause"] is None


def test_a_shrink_drains_idle_workers_first_then_the_highest_slots(tmp_path):
    import json
    import socket

    from modulatio_d.daemon.pool import Settings, Supervisor, Worker
    from modulatio_d.ops.init import init

    vault = init(tmp_path / "v")
    sup = Supervisor(Settings(vault, [], 4, {}, lambda argv, env, cwd: 0))
    workers = [Worker(slot, SimpleNamespace(pid=1000 + slot), 0.0, "", 0) for slot in (1, 2, 3, 4)]
    vault.daemons_dir.mkdir(parents=True, exist_ok=True)
    for w in workers:  # slots 1 and 3 run a plan, 2 and 4 are idle
        (vault.daemons_dir / f"{socket.gethostname()}.{w.proc.pid}.json").write_text(json.dumps(
            {"pid": w.proc.pid, "last_tick": "2026-01-01T00:00:00Z",
             "active_plan": "A-P-001" if w.slot in (1, 3) else None}))
    assert [w.slot for w in sup._surplus(workers, 3)] == [4, 2, 3]
    sup.waker.close()

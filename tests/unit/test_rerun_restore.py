"""`plan rerun` and `plan restore` (ops/reruns.py) and init's .gitignore, in this process."""

from __future__ import annotations

import json

from vault_texts import write

from modulatio_d.core.markdown import set_keys
from modulatio_d.core.plan import PlanStatus
from modulatio_d.ops import init as init_mod
from modulatio_d.store.lock import FileLock, lock_path
from modulatio_d.store.plan_file import HeldPlan, read_plan

DONE = """---
id: ESS-P-001
title: Digest
status: completed
sub_objectives:
  - {run: echo one}
  - {run: echo two}
current_index: 2
execution_started_at: 2026-12-01T10:00:00Z
completed_at: 2026-12-01T10:05:00Z
reflection_log:
  - {index: 0, title: echo one, attempt: 1, outcome: ok, log: ESS-P-001.runs/0-1.log, token: 7}
  - {index: 1, title: echo two, attempt: 1, outcome: ok, log: ESS-P-001.runs/1-1.log, token: 7}
rev: 5
---
Body.
"""


def finished(vault):
    path = write(vault.plan_path("ESS", "ESS-P-001"), DONE)
    write(path.with_suffix(".runs") / "0-1.log", "one\n")
    write(path.with_suffix(".runs") / "1-1.log", "two\n")
    write(path.with_suffix(".usage.jsonl"), '{"input_tokens": 5}\n')
    return path


def test_rerun_keeps_the_old_run_and_starts_where_asked(vault, run_cli):
    path = finished(vault)
    r = run_cli("plan", "rerun", "ESS-P-001", "--from", "2", "--vault", vault.root)
    assert (r.code, r.out) == (0, "ESS-P-001: approved (run 2, from step 2/2)\n"), r.err
    plan = read_plan(vault, path).plan
    assert (plan.status, plan.current_index, plan.reflection_log) == (PlanStatus.APPROVED, 1, [])
    assert plan.completed_at is None and plan.execution_started_at is None
    assert plan.runs == [{"run": 1, "status": "completed", "done": 2, "total": 2,
                          "started_at": "2026-12-01T10:00:00Z",
                          "ended_at": "2026-12-01T10:05:00Z", "token": 7,
                          "history": "ESS-P-001.runs/run-1"}]
    assert plan.last_token == 7  # the next claim's token is higher than any before
    history = path.with_suffix(".runs") / "run-1"
    assert sorted(p.name for p in history.iterdir()) == [
        "0-1.log", "1-1.log", "reflection_log.json", "usage.jsonl"]
    assert (history / "0-1.log").read_text() == "one\n"
    assert len(json.loads((history / "reflection_log.json").read_text())["reflection_log"]) == 2
    assert not path.with_suffix(".usage.jsonl").exists()  # the budget counts the new run
    assert path.read_text().endswith("---\nBody.\n")

    # the second rerun keeps the first run's folder and numbers on
    HeldPlan(vault, path).update({"status": "completed", "current_index": 2})
    assert run_cli("plan", "rerun", "ESS-P-001", "--vault", vault.root).code == 0
    plan = read_plan(vault, path).plan
    assert [r["run"] for r in plan.runs] == [1, 2] and plan.current_index == 0
    assert (path.with_suffix(".runs") / "run-1" / "0-1.log").exists()


def test_rerun_is_refused_before_the_end_and_out_of_range(vault, run_cli):
    path = finished(vault)
    r = run_cli("plan", "rerun", "ESS-P-001", "--from", "3", "--vault", vault.root)
    assert r.code == 2 and "has steps 1 to 2: --from 3" in r.err
    path.write_text(DONE.replace("status: completed", "status: paused"))
    r = run_cli("plan", "rerun", "ESS-P-001", "--vault", vault.root)
    assert r.code == 1 and "rerun works only from completed, failed, aborted" in r.err
    assert read_plan(vault, path).plan.reflection_log  # nothing changed


def test_restore_trusts_an_older_file(vault, run_cli):
    path = finished(vault)
    old = path.read_text()
    HeldPlan(vault, path).update({"last_error": "later"})  # the daemon's record: rev 6
    path.write_text(old)  # `git checkout` of the rev-5 file: looks like a stale save
    assert HeldPlan(vault, path).plan.last_error == "later"  # repaired (rev 7) ...
    path.write_text(old)
    r = run_cli("plan", "restore", "ESS-P-001", "--vault", vault.root)
    assert r.code == 0 and "trusted as it stands (rev 8)" in r.out, r.err
    held = HeldPlan(vault, path)  # ... but not after restore
    assert (held.plan.last_error, held.plan.rev) == (None, 8)


def test_restore_and_rerun_refuse_a_held_plan(vault, run_cli):
    path = finished(vault)
    lock = FileLock(lock_path(path))
    assert lock.try_acquire()
    with lock:
        for cmd in ("restore", "rerun"):
            r = run_cli("plan", cmd, "ESS-P-001", "--vault", vault.root)
            assert r.code != 0 and "is locked" in r.err, (cmd, r)


def test_init_writes_a_gitignore_once(tmp_path):
    init_mod.init(tmp_path / "v")
    text = (tmp_path / "v" / ".gitignore").read_text()
    for pattern in ("*.lock", "*.usage.jsonl", "*.runs/", ".*.tmp", "/.modulatio/state/"):
        assert pattern in text.splitlines()
    mine = tmp_path / "w" / ".gitignore"
    write(mine, "notes/\n")
    init_mod.init(tmp_path / "w")
    assert mine.read_text() == "notes/\n"


def test_set_keys_is_used_with_daemon_order():
    # keys a rerun removes and a later claim adds again come back in place
    text = "---\nid: x\ncurrent_index: 0\nreflection_log: []\nrev: 1\n---\n"
    again = set_keys(text, {"runs": [{"run": 1}], "claim": {"token": 2}},
                     order=("current_index", "claim", "runs", "reflection_log", "rev"))
    assert again.splitlines()[2:6] == ["current_index: 0", "claim: {token: 2}", "runs:",
                                       "  - {run: 1}"]

"""Retention (store/retention.py) and `modulatio prune`, in this process."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime

from vault_texts import plan_text, write

from modulatio_d.ops.plans import next_plan_number
from modulatio_d.store import retention
from modulatio_d.store.lock import FileLock, lock_path

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
DAY = 86400


def plan_at(vault, plan_id: str, status: str, days_old: float, now: float = NOW.timestamp()):
    path = write(vault.plan_path("ESS", plan_id), plan_text(plan_id, status, "  - a\n"))
    write(path.with_suffix(".runs") / "0001-01.log", "out\n")
    write(path.with_suffix(".usage.jsonl"), "{}\n")
    write(path.with_suffix(".lock"), "")
    write(vault.record_path("ESS", plan_id), "{}")
    t = now - days_old * DAY
    os.utime(path, (t, t))
    return path


def test_old_finished_plans_are_archived_with_their_files(vault):
    old = plan_at(vault, "ESS-P-001", "completed", 40)  # 2026-10-23
    plan_at(vault, "ESS-P-002", "failed", 35)
    plan_at(vault, "ESS-P-003", "paused", 90)  # not finished: stays
    plan_at(vault, "ESS-P-004", "completed", 2)  # recent: stays
    report = retention.prune(vault, ["ESS"], NOW, 30 * DAY)
    assert sorted(report.archived) == ["ESS-P-001", "ESS-P-002"]
    month = vault.project_dir("ESS") / "archive" / "2026" / "10"
    assert sorted(p.name for p in month.iterdir()) == [
        "ESS-P-001.md", "ESS-P-001.runs", "ESS-P-001.state.json", "ESS-P-001.usage.jsonl",
        "ESS-P-002.md", "ESS-P-002.runs", "ESS-P-002.state.json", "ESS-P-002.usage.jsonl"]
    assert (month / "ESS-P-001.runs" / "0001-01.log").read_text() == "out\n"
    left = sorted(p.name for p in vault.plans_dir("ESS").iterdir())
    assert not any(n.startswith(("ESS-P-001", "ESS-P-002")) for n in left), left
    assert not old.with_suffix(".lock").exists()
    assert next_plan_number(vault, "ESS") == 5  # an archived id is never given again


def test_keep_last_dry_run_a_held_lock_and_remove(vault):
    for n, age in ((1, 50), (2, 45), (3, 40)):
        plan_at(vault, f"ESS-P-00{n}", "completed", age)
    report = retention.prune(vault, ["ESS"], NOW, 30 * DAY, keep_last=1, dry_run=True)
    assert sorted(report.archived) == ["ESS-P-001", "ESS-P-002"]  # the newest stays
    assert vault.plan_path("ESS", "ESS-P-001").exists()  # a dry run changes nothing
    lock = FileLock(lock_path(vault.plan_path("ESS", "ESS-P-001")))
    assert lock.try_acquire()
    with lock:
        report = retention.prune(vault, ["ESS"], NOW, 30 * DAY, keep_last=1, remove=True)
    assert report.archived == ["ESS-P-002"] and report.skipped == ["ESS-P-001: its lock is held"]
    assert not vault.plan_path("ESS", "ESS-P-002").exists()
    assert not (vault.project_dir("ESS") / "archive").exists()  # removed, not archived
    assert not vault.plan_path("ESS", "ESS-P-002").with_suffix(".runs").exists()


def test_one_pruner_at_a_time_and_old_event_logs(vault):
    vault.meta.mkdir(exist_ok=True)
    old, new = vault.meta / "events-20261001T000000Z.jsonl", \
        vault.meta / "events-20261130T000000Z.jsonl"
    for path in (old, new, vault.events_path):
        path.write_text('{"event": "x"}\n')
    lock = FileLock(vault.meta / "retention.lock")
    assert lock.try_acquire()
    with lock:
        assert retention.prune(vault, ["ESS"], NOW, 30 * DAY).busy
    report = retention.prune(vault, ["ESS"], NOW, 30 * DAY)
    assert report.events_removed == [old.name]
    assert not old.exists() and new.exists() and vault.events_path.exists()


def test_prune_command(vault, run_cli):
    plan_at(vault, "ESS-P-001", "aborted", 40, now=time.time())  # the command's clock
    r = run_cli("prune", "--older-than", "30d", "--dry-run", "--vault", vault.root)
    assert r.code == 0 and "would archive ESS-P-001" in r.out, (r.out, r.err)
    r = run_cli("prune", "--older-than", "60d", "--json", "--vault", vault.root)
    assert r.code == 0 and json.loads(r.out)["archived"] == []
    r = run_cli("prune", "--older-than", "soon", "--vault", vault.root)
    assert r.code == 2 and "--older-than" in r.err
    r = run_cli("prune", "--vault", vault.root)  # default: 30 days
    assert r.code == 0 and "1 plan(s) archived" in r.out

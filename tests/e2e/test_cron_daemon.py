"""End to end: a cron entry that is due, and `modulatio daemon --once`, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from modulatio_d.core import times
from modulatio_d.core.plan import PlanStatus
from modulatio_d.store import cron_entries, events
from modulatio_d.store.plan_file import read_plan


def modulatio() -> list[str]:
    script = Path(sys.executable).with_name("modulatio")
    return [str(script)] if script.exists() else [sys.executable, "-m", "modulatio_d"]


def run(vault, *argv, timeout=60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MODULATIO_VAULT"}
    return subprocess.run(modulatio() + [str(a) for a in argv], check=False, cwd=vault.root,
                          env=env, capture_output=True, text=True, timeout=timeout)


def due_entry(vault, *extra) -> tuple[str, Path]:
    """An entry whose one due time was two minutes ago; the next is a day away, so a
    test that crosses a minute boundary still sees exactly one due time."""
    now = datetime.now(UTC)
    due = now - timedelta(minutes=2)
    r = run(vault, "cron", "add", "SALES", "Say hello", "--schedule",
            f"{due.minute} {due.hour} * * *", "--timezone", "UTC", *extra)
    assert r.returncode == 0, r.stderr
    cron_id = r.stdout.strip()
    path = vault.cron_dir("SALES") / f"{cron_id}.md"
    text = path.read_text()
    start = text.index("created_at: ")
    earlier = times.format_time(now - timedelta(minutes=5))
    path.write_text(text[:start] + f"created_at: {earlier}" + text[text.index("\n", start):])
    return cron_id, path


def kickoffs(vault, cron_id):
    return sorted(p for p in vault.plans_dir("SALES").glob(f"{cron_id}-*.md"))


def test_a_due_kickoff_runs_to_completed_in_the_same_once_call(vault):
    cron_id, path = due_entry(vault, "--step", "touch ran.txt")
    r = run(vault, "daemon", "--vault", vault.root, "--once")
    assert r.returncode == 0, r.stderr
    (plan_path,) = kickoffs(vault, cron_id)
    plan = read_plan(vault, plan_path).plan
    assert plan.status is PlanStatus.COMPLETED, r.stderr
    assert plan.data["cron"] == cron_id and plan.current_index == 1
    assert (vault.root / "SALES" / "ran.txt").exists()
    entry = cron_entries.read_entry(vault, path)
    assert entry.last_fired_for == times.parse_time(plan.data["scheduled_for"])
    log = [e["event"] for e in events.read(vault.events_path) if e.get("plan") == plan.id]
    assert log.index("cron_fired") < log.index("status_changed")


def test_a_text_only_kickoff_goes_to_the_default_agent(vault):
    cron_id, _ = due_entry(vault)
    r = run(vault, "daemon", "--vault", vault.root, "--once")
    assert r.returncode == 0, r.stderr
    (plan_path,) = kickoffs(vault, cron_id)
    assert read_plan(vault, plan_path).plan.status is PlanStatus.COMPLETED, r.stderr


def test_a_draft_kickoff_waits_for_a_person(vault):
    cron_id, _ = due_entry(vault, "--draft", "--step", "touch ran.txt")
    r = run(vault, "daemon", "--vault", vault.root, "--once")
    assert r.returncode == 0, r.stderr
    (plan_path,) = kickoffs(vault, cron_id)
    assert read_plan(vault, plan_path).plan.status is PlanStatus.DRAFT
    assert not (vault.root / "SALES" / "ran.txt").exists()


def test_two_once_daemons_at_the_same_time_make_one_kickoff(vault):
    cron_id, _ = due_entry(vault, "--step", "echo once >> ran.txt")
    env = {k: v for k, v in os.environ.items() if k != "MODULATIO_VAULT"}
    procs = [subprocess.Popen(modulatio() + ["daemon", "--vault", str(vault.root), "--once"],
                              cwd=vault.root, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        assert p.returncode == 0, err
    (plan_path,) = kickoffs(vault, cron_id)
    assert read_plan(vault, plan_path).plan.status is PlanStatus.COMPLETED
    assert (vault.root / "SALES" / "ran.txt").read_text() == "once\n"
    assert sum(e["event"] == "cron_fired" for e in events.read(vault.events_path)) == 1

"""Retention with real daemons: the background prune, step log caps, events rotation."""

from __future__ import annotations

import json
import os
import time

import pytest
from helpers import cli, events, modulatio, plan, settled, write_plan
from waiting import wait_for

pytestmark = pytest.mark.timeout(60)
DAY = 86400


def config(dv, retention: str) -> None:
    path = dv.vault.config_path
    path.write_text(path.read_text() + "retention:\n" + retention)


def test_daemon_archives_old_finished_plans_in_the_background(dvault, daemons):
    config(dvault, "  older_than: 30d\n  keep_last: 1\n")
    for n in (1, 2, 3):
        path = write_plan(dvault, f"P-P-00{n}", [{"run": "true"}], status="completed")
        t = time.time() - (60 - n) * DAY
        os.utime(path, (t, t))
    running = write_plan(dvault, "P-P-004", [{"run": "true"}])
    d = daemons(tick=0.5)
    wait_for(lambda: len(events(dvault, "plan_archived")) == 2, 15, "two archived", diag=d.log)
    wait_for(settled(dvault, "P-P-004", "completed"), 15, "P-P-004 ran", diag=d.log)
    archived = sorted(p.name for p in (dvault.root / "P" / "archive").rglob("*.md"))
    assert archived == ["P-P-001.md", "P-P-002.md"]
    assert (dvault.plans / "P-P-003.md").exists()  # keep_last: the newest finished stays
    assert running.exists()
    r = cli(dvault, "plan", "new", "P", "next")
    assert r.out == "P-P-005\n"  # archived ids are not given out again
    assert "retention: 2 finished plan(s) archived" in d.log()


def test_a_step_log_is_capped_with_its_head_and_tail(dvault, daemons):
    config(dvault, "  max_log_bytes: 64K\n")
    script = ("import sys; print('first line'); "
              "[sys.stdout.write('x' * 1023 + '\\n') for _ in range(1024)]; print('last line')")
    write_plan(dvault, "P-P-001", [{"title": "loud", "run": ["python3", "-c", script]}])
    d = daemons(tick=0.5)
    p = wait_for(settled(dvault, "P-P-001", "completed"), 30, "completed", diag=d.log)
    log_path = dvault.plans / p.reflection_log[0]["log"]
    assert log_path.name == "0001-01.log"
    data = log_path.read_text()
    assert len(data) < 70 * 1024
    lines = data.splitlines()
    assert lines[0].startswith("== modulatio: plan P-P-001 step 1 “loud” attempt 1, started ")
    assert lines[1].startswith("== modulatio: command python3 -c ")
    assert lines[2] == f"== modulatio: cwd {dvault.root / 'P'}"
    assert lines[3] == "first line" and lines[-1] == "last line"
    assert "bytes cut here (the log is capped at 65536 bytes" in data
    assert p.reflection_log[0]["summary"] == "last line"


def test_events_rotate_and_status_still_reads_them(dvault, daemons):
    config(dvault, "  events_max_bytes: 2K\n")
    for n in range(1, 9):
        write_plan(dvault, f"P-P-00{n}", [{"run": "true"}, {"run": "true"}])
    d = daemons(tick=0.5)
    for n in range(1, 9):
        wait_for(settled(dvault, f"P-P-00{n}", "completed"), 30, f"P-P-00{n}", diag=d.log)
    rotated = sorted(dvault.vault.meta.glob("events-*.jsonl"))
    assert rotated, "no rotation"
    ended = events(dvault, "step_ended")  # read across the rotated files
    assert len(ended) == 16
    assert plan(dvault, "P-P-008").status.value == "completed"
    r = cli(dvault, "metrics")
    assert r.code == 0 and 'modulatio_steps_run_total{project="P"} 16' in r.out, r.out


def test_the_events_command_reads_across_rotated_parts(dvault):
    from datetime import UTC, datetime, timedelta

    from modulatio_d.store.events import EventLog
    from modulatio_d.store.events import files as event_files

    start = datetime(2026, 12, 1, tzinfo=UTC)
    n_now = [0]
    log = EventLog(dvault.vault.events_path, lambda: start + timedelta(seconds=n_now[0]),
                   max_bytes=4096)
    for n in range(200):
        n_now[0] = n
        log._since = 1 << 30  # look at the size at every line: rotate as soon as it is over
        log("step_started", project="P", plan="P-P-001", n=n)
    assert len(event_files(dvault.vault.events_path)) >= 3
    r = modulatio("events", "--last", "150", "--json", "--vault", dvault.root)
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["n"] for line in r.stdout.splitlines()] == list(range(50, 200))
    r = modulatio("events", "--since", "2000-01-01T00:00:00Z", "--vault", dvault.root)
    assert len(r.stdout.splitlines()) == 200
    r = modulatio("events", "--since", "2026-12-01T00:02:30Z", "--json", "--vault", dvault.root)
    assert [json.loads(line)["n"] for line in r.stdout.splitlines()] == list(range(150, 200))

"""Jittered and interval cron entries with racing real processes: each scheduled instant
fires exactly once, at the moments `cron next` announces (tests/e2e/cron_helpers/fire.py
runs CronFirer.fire_due with a fixed `now`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from modulatio_d.core import markdown
from modulatio_d.store import events

HELPER = Path(__file__).parent / "cron_helpers" / "fire.py"
NOW = "2025-01-01T10:10:00+00:00"


def write_entry(vault, cron_id: str, timing: str) -> Path:
    path = vault.cron_dir("SALES") / f"{cron_id}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\nid: {cron_id}\nobjective: Report\n{timing}timezone: UTC\n"
                    "created_at: 2025-01-01T00:30:00Z\ncatch_up: all\noverlap: allow\n---\n")
    return path


def cron_next(vault, cron_id: str, n: int) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "modulatio_d", "cron", "next", cron_id,
                          "--vault", str(vault.root), "-n", str(n), "--json",
                          "--after", "2025-01-01T00:30:00Z"],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)["fires"]


def race(vault, tmp_path: Path, wait_for, until: dict[str, str]) -> list[str]:
    barrier = tmp_path / "go"
    args = [f"--barrier={barrier}", *(f"--until={k}={v}" for k, v in until.items())]
    procs = [subprocess.Popen([sys.executable, str(HELPER), str(vault.root), "SALES", NOW,
                               *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "MODULATIO_TEST_FAULT": ""})
             for _ in range(3)]
    wait_for(lambda: len(list(tmp_path.glob("go.ready.*"))) == 3, timeout=30,
             what="three firers at the barrier")
    barrier.touch()
    created = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            pytest.fail("a firer hung")
        assert p.returncode == 0, err
        created += json.loads(out)
    return created


def test_jittered_and_interval_entries_fire_once_per_instant_as_cron_next_says(
        vault, tmp_path, wait_for):
    write_entry(vault, "SALES-C-001", 'schedule: "0 * * * *"\njitter: 40m\n')
    write_entry(vault, "SALES-C-002", "every: 90m\nstart: 2025-01-01T00:45:00Z\n")
    write_entry(vault, "SALES-C-003", "every: 2h\nstart: 2025-01-01T01:00:00Z\njitter: 59m\n")
    now = datetime.fromisoformat(NOW)
    expected: list[str] = []
    until: dict[str, str] = {}
    for cron_id in ("SALES-C-001", "SALES-C-002", "SALES-C-003"):
        fires = cron_next(vault, cron_id, 12)
        due = [f for f in fires if datetime.fromisoformat(f["local"]) <= now]
        assert due and len(due) < len(fires)
        expected += [f["kickoff"] for f in due]
        last = due[-1].get("scheduled_for", due[-1]["utc"])
        until[cron_id] = datetime.fromisoformat(last.replace("Z", "+00:00")).isoformat()
    # the jitter really moved the moments, and only within its bound
    jittered = cron_next(vault, "SALES-C-001", 12)
    delays = {(datetime.fromisoformat(f["utc"].replace("Z", "+00:00"))
               - datetime.fromisoformat(f["scheduled_for"].replace("Z", "+00:00"))
               ).total_seconds() for f in jittered}
    assert len(delays) > 3 and all(0 <= d < 40 * 60 for d in delays)
    assert [f["kickoff"] for f in cron_next(vault, "SALES-C-002", 3)] == [
        "SALES-C-002-20250101T0045Z", "SALES-C-002-20250101T0215Z",
        "SALES-C-002-20250101T0345Z"]  # from its start, every 90 minutes

    created = race(vault, tmp_path, wait_for, until)
    assert sorted(created) == sorted(expected)  # each by exactly one of the three
    fired = Counter(e["plan"] for e in events.read(vault.events_path)
                    if e["event"] == "cron_fired")
    assert fired == Counter(expected)
    for cron_id, instant in until.items():
        path = vault.cron_dir("SALES") / f"{cron_id}.md"
        data = markdown.load(path, path.read_text()).data
        assert datetime.fromisoformat(str(data["last_fired_for"])) == \
            datetime.fromisoformat(instant)

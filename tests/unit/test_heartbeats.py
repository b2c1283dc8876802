"""Choosing among heartbeat files (store/heartbeat.py). A real daemon beating:
tests/e2e/test_heartbeat.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from modulatio_d.store.heartbeat import Heartbeat, freshest, read_all


def test_freshest_live_daemon_wins(tmp_path):
    now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    older = Heartbeat(tmp_path, 30, "0", now)
    older.beat(now - timedelta(seconds=20), "A", 1)
    # Another live process here (this one's parent) with a fresher beat.
    other = Heartbeat(tmp_path, 30, "0", now)
    other.pid = os.getppid()
    other.path = tmp_path / f"{other.host}.{other.pid}.json"
    other.fields["pid"] = other.pid
    other.beat(now - timedelta(seconds=2), "B", 0)
    dead = Heartbeat(tmp_path, 30, "0", now)
    dead.pid = 2 ** 22 + 12345  # above pid_max: never a live process
    dead.path = tmp_path / f"{dead.host}.{dead.pid}.json"
    dead.fields["pid"] = dead.pid
    dead.beat(now, "C", 0)
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / ".x.json.tmp").write_text("{}")
    beats = read_all(tmp_path, now)
    assert [(b["active_plan"], b["live"], b["age_s"]) for b in beats] == [
        ("C", False, 0.0), ("B", True, 2.0), ("A", True, 20.0)]
    assert freshest(tmp_path, now)["active_plan"] == "B"
    older.remove()
    older.remove()  # removing twice is fine
    assert [b["active_plan"] for b in read_all(tmp_path, now)] == ["C", "B"]

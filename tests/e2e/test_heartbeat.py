"""Heartbeats with real daemons: fresh during a step longer than the tick, gone (exit 1)
after a clean stop, stale after SIGKILL; and the reading side on its own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from daemon_helpers import PY, cli, marks, plan, wait_for, wait_started, wait_ticks, write_plan

from modulatio_d.store.heartbeat import Heartbeat, freshest, read_all

pytest_plugins = ("daemon_helpers",)  # the dvault and daemons fixtures
pytestmark = pytest.mark.timeout(30)
PID = "P-P-001"


def probe(dv, max_age: float) -> subprocess.CompletedProcess:
    """`modulatio heartbeat --max-age S` as a monitor runs it: a separate process."""
    return subprocess.run([PY, "-m", "modulatio_d", "heartbeat", "--vault", str(dv.root),
                           "--max-age", str(max_age)], capture_output=True, text=True,
                          timeout=20, check=False)


def test_fresh_during_a_long_step_and_gone_after_a_clean_stop(dvault, daemons):
    go = dvault.root / "go"
    write_plan(dvault, PID, [{"title": "long", "run": dvault.step(go=go)}])
    d = daemons(tick=0.5)
    wait_for(lambda: marks(dvault.root / "marks"), 10, "step started", diag=d.log)
    t0 = time.monotonic()
    wait_ticks(d, dvault, 3)  # the step has now run for several ticks
    r = probe(dvault, 1.0)
    assert time.monotonic() - t0 > 1.0  # the step outlived the max age: beats came meanwhile
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["active_plan"] == PID and out["daemon"] == f"{socket.gethostname()}.{d.pid}"
    assert out["age_s"] < 1.0
    beat = json.loads((dvault.vault.daemons_dir / f"{socket.gethostname()}.{d.pid}.json")
                      .read_text())
    assert beat["step"] == 0 and beat["pid"] == d.pid and beat["tick_seconds"] == 0.5
    assert {"started_at", "version", "host", "last_tick"} <= set(beat)

    go.touch()
    wait_for(lambda: plan(dvault, PID).status.value == "completed", 10, "completed")
    wait_for(lambda: json.loads(cli(dvault, "heartbeat").out)["active_plan"] is None, 5,
             "idle heartbeat")
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0
    assert not list(dvault.vault.daemons_dir.glob("*.json"))
    r = probe(dvault, 60)
    assert r.returncode == 1 and "no live daemon" in r.stderr
    assert json.loads(r.stdout)["last_tick"] is None


def test_stale_after_sigkill(dvault, daemons):
    d = daemons(tick=0.5)
    wait_started(d, dvault)
    wait_for(lambda: list(dvault.vault.daemons_dir.glob("*.json")), 5, "heartbeat file")
    assert cli(dvault, "heartbeat", "--max-age", "60").code == 0
    d.kill()
    files = list(dvault.vault.daemons_dir.glob("*.json"))
    assert len(files) == 1  # left behind by the killed daemon
    r = cli(dvault, "heartbeat", "--max-age", "60")
    assert r.code == 1  # fresh enough, but its pid is dead: not live
    everyone = json.loads(cli(dvault, "heartbeat", "--all").out)
    assert [(b["pid"], b["live"]) for b in everyone] == [(d.pid, False)]


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

"""Heartbeats with real daemons: fresh during a step longer than the tick, gone (exit 2)
after a clean stop, stale after SIGKILL (the reading side on its own:
tests/unit/test_heartbeats.py)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import pytest
from helpers import PY, cli, marks, plan, wait_started, wait_ticks, write_plan
from waiting import wait_for

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
    r = probe(dvault, 60)  # none alive: CRITICAL, as monitoring plugins say it
    assert r.returncode == 2 and "CRITICAL: no live daemon" in r.stderr
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
    assert r.code == 2  # fresh enough, but its pid is dead: not live, so CRITICAL
    everyone = json.loads(cli(dvault, "heartbeat", "--all").out)
    assert [(b["pid"], b["live"]) for b in everyone] == [(d.pid, False)]

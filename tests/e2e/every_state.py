"""The every-state vault: `modulatio status` and `modulatio metrics` are checked
against it (tests/e2e/test_status.py, test_metrics_every_state.py), built once per
session by the `every_state` fixture (conftest.py).

- SALES, run to the end by `modulatio daemon --once --project SALES`:
  SALES-P-001 completed (its step writes a usage line), SALES-P-002 failed
  (on_failure: abort), SALES-P-003 paused at step 1 with a ticket,
  SALES-P-004 approved but malformed (refused by the daemon), SALES-P-005
  aborted (`plan abort`), SALES-P-006 draft; cron entries SALES-C-001 (fired
  once after an hour of missed minutes: its kickoff completed), SALES-C-002
  (disabled: its times are skipped) and SALES-C-003 (malformed).
- OPS, served by a live `modulatio daemon --project OPS`: OPS-P-001 executing,
  its step waiting for a file, so the daemon and the step's child hold the
  plan's lock; OPS-P-002 approved, waiting behind it.
- LATER, served by nobody: LATER-P-001 approved, LATER-P-002 executing with a
  free lock (an orphan of a dead daemon), LATER-P-003 with an unknown status,
  LATER-P-004 with no frontmatter, a usage file written by hand, cron entry
  LATER-C-001 (06:00 UTC daily, not due yet).
- heartbeats: the live OPS daemon, a dead daemon of this host (stale), a
  fresh one from another host (live by age).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_runner import run_cli
from helpers import clean_env, modulatio
from vault_texts import plan_text, write
from waiting import wait_for

from modulatio_d.core.times import format_time
from modulatio_d.ops import survey
from modulatio_d.ops.init import init
from modulatio_d.store.events import read as read_events
from modulatio_d.store.vault import Vault

PY = sys.executable
HOST = socket.gethostname()


def cron_entry(entry_id: str, schedule: str, created: datetime, enabled: bool = True) -> str:
    return (f"---\nid: {entry_id}\nobjective: Kickoff of {entry_id}\nschedule: \"{schedule}\"\n"
            f"timezone: UTC\nenabled: {'true' if enabled else 'false'}\ncatch_up: latest\n"
            f"created_at: {format_time(created)}\nlast_fired_for: null\n---\n")


USAGE_LINE = ('echo \'{"model": "m1", "input_tokens": 1000, "output_tokens": 200, '
              '"cost_usd": 0.25}\' >> "$MODULATIO_USAGE_FILE"')
LATER_USAGE = [
    {"model": "m", "input_tokens": 7, "output_tokens": 3, "cost_usd": 0.5},
    {"model": "m", "input_tokens": 11, "output_tokens": 13, "cost_usd": 1.25},
]


@dataclass
class EveryState:
    vault: Vault
    ops_daemon: subprocess.Popen
    stale_pid: int
    started: datetime

    @property
    def root(self) -> Path:
        return self.vault.root


def build_every_state(root: Path) -> EveryState:
    vault = init(root / "vault")
    r = vault.root
    now = datetime.now(UTC)
    hour_ago = now - timedelta(hours=1)

    sales = r / "SALES" / "plans"
    write(sales / "SALES-P-001.md", plan_text("SALES-P-001", "approved",
                                         f"  - title: Work and report usage\n"
                                         f"    run: {json.dumps(USAGE_LINE)}\n"))
    write(sales / "SALES-P-002.md", plan_text("SALES-P-002", "approved",
                                         "  - title: Break\n    run: exit 3\n"
                                         "    on_failure: abort\n"))
    write(sales / "SALES-P-003.md", plan_text("SALES-P-003", "approved",
                                         "  - title: Fine\n    run: \"true\"\n"
                                         "  - title: Needs a person\n    run: exit 4\n"))
    # Malformed, and old enough that the daemon judges it (it waits 2 s after a change).
    write(sales / "SALES-P-004.md", "---\nid: SALES-P-004\nstatus: approved\n"
                                    "sub_objectives: [unclosed\n---\n", age_s=30)
    write(sales / "SALES-P-005.md", plan_text("SALES-P-005", "draft", "  - Never run\n"))
    write(sales / "SALES-P-006.md", plan_text("SALES-P-006", "draft", "  - Still a draft\n"))
    cron_dir = r / "SALES" / "cron"
    write(cron_dir / "SALES-C-001.md", cron_entry("SALES-C-001", "* * * * *", hour_ago), 30)
    write(cron_dir / "SALES-C-002.md", cron_entry("SALES-C-002", "* * * * *", hour_ago,
                                                  enabled=False), 30)
    write(cron_dir / "SALES-C-003.md", cron_entry("SALES-C-003", "every tuesday", hour_ago), 30)

    later = r / "LATER" / "plans"
    write(later / "LATER-P-001.md", plan_text("LATER-P-001", "approved", "  - Waits for a daemon\n"))
    started = now - timedelta(minutes=10)
    write(later / "LATER-P-002.md", plan_text(
        "LATER-P-002", "executing", "  - title: One\n    run: \"true\"\n"
        "  - title: Two, interrupted\n    run: \"true\"\n  - title: Three\n    run: \"true\"\n",
        extra=f"claim: {{host: {HOST}, pid: 999999, token: 3, claimed_at: "
              f"\"{format_time(started)}\"}}\n"
              f"execution_started_at: {format_time(started)}\n"
              f"in_flight: {{index: 1, attempt: 2, token: 3, started_at: "
              f"\"{format_time(now - timedelta(minutes=5))}\"}}\n")
        .replace("current_index: 0", "current_index: 1"))
    write(later / "LATER-P-003.md", plan_text("LATER-P-003", "runing", "  - Typo in status\n"))
    write(later / "LATER-P-004.md", "Just notes, no frontmatter.\n")
    write(later / "LATER-P-001.usage.jsonl",
          "".join(json.dumps(u) + "\n" for u in LATER_USAGE) + "not json\n")
    write(r / "LATER" / "cron" / "LATER-C-001.md", cron_entry("LATER-C-001", "0 6 * * *", now))

    done = modulatio("daemon", "--vault", r, "--once", "--project", "SALES",
                     "--tick-seconds", "0.2")
    assert done.returncode == 0, done.stderr
    aborted = run_cli("plan", "abort", "SALES-P-005", "--vault", r, cwd=r)
    assert aborted.code == 0, aborted.err

    ops = r / "OPS" / "plans"
    write(ops / "OPS-P-001.md", plan_text(
        "OPS-P-001", "approved",
        "  - title: Wait for the release file\n"
        "    run: [\"sh\", \"-c\", \"until [ -e release ]; do sleep 0.02; done\"]\n"
        "  - title: After\n    run: \"true\"\n", priority=90))
    write(ops / "OPS-P-002.md", plan_text("OPS-P-002", "approved", "  - Next in line\n",
                                     priority=10))
    daemon = subprocess.Popen(
        [PY, "-m", "modulatio_d", "daemon", "--vault", str(r), "--project", "OPS",
         "--tick-seconds", "0.3"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=clean_env())

    def step_running() -> bool:
        if daemon.poll() is not None:
            pytest.fail(f"the OPS daemon exited: {daemon.stderr.read().decode()}")
        return any(e.get("event") == "step_started" and e.get("plan") == "OPS-P-001"
                   for e in read_events(vault.events_path, ("step_started",)))

    wait_for(step_running, what="OPS-P-001's first step to start")
    wait_for(lambda: any(d["active_plan"] == "OPS-P-001" and d["pid"] == daemon.pid
                           for d in survey.daemons(vault, datetime.now(UTC))),
               what="the OPS daemon's heartbeat naming OPS-P-001")

    dead = subprocess.run([PY, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    stale_pid = int(dead.stdout)
    beats = vault.daemons_dir
    old = now - timedelta(hours=2)
    write(beats / f"{HOST}.{stale_pid}.json", json.dumps({
        "pid": stale_pid, "host": HOST, "started_at": format_time(old - timedelta(days=1)),
        "tick_seconds": 30.0, "version": "0.1.0", "last_tick": format_time(old),
        "active_plan": "LATER-P-002", "step": 1}))
    state = EveryState(vault, daemon, stale_pid, now)
    beat_remote(state)
    return state


def beat_remote(state: EveryState) -> None:
    """The live daemon of another host ticks now (started three hours before the build)."""
    write(state.vault.daemons_dir / "elsewhere.42.json", json.dumps({
        "pid": 42, "host": "elsewhere",
        "started_at": format_time(state.started - timedelta(hours=3)),
        "tick_seconds": 30.0, "version": "0.1.0",
        "last_tick": format_time(datetime.now(UTC)), "active_plan": None,
        "step": None}))


def tear_down(state: EveryState) -> None:
    (state.root / "OPS" / "release").touch()
    if state.ops_daemon.poll() is None:
        state.ops_daemon.send_signal(signal.SIGTERM)
    try:
        state.ops_daemon.wait(timeout=20)
    except subprocess.TimeoutExpired:
        state.ops_daemon.kill()
        state.ops_daemon.wait()
    state.ops_daemon.stderr.close()

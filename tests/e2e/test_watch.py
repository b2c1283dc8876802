"""`events --follow`, `logs --follow` and `kickoff`: real processes, lines timed from
their write to their arrival on the follower's stdout (a deadline each, no sleeps)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time

from helpers import PY, clean_env, modulatio, plan, settled, starts, write_plan
from waiting import wait_for

from modulatio_d.store.events import EventLog

LATENCY_S = 0.2


class Lines:
    """A real `modulatio ...` process whose stdout lines arrive in a queue, timestamped."""

    def __init__(self, *argv: object):
        self.proc = subprocess.Popen([PY, "-m", "modulatio_d", *map(str, argv)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=clean_env(), start_new_session=True)
        self.q: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.q.put((time.monotonic(), line.rstrip("\n")))

    def wait_line(self, needle: str, timeout: float) -> float:
        """When the first line holding `needle` arrived; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                at, line = self.q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {needle!r} within {timeout}s") from None
            if needle in line:
                return at

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=10)
        return self.proc.stderr.read()


def test_events_follow_sees_lines_within_200ms_across_a_rotation(dvault):
    log = EventLog(dvault.vault.events_path)
    log("warm_up", n=0)
    f = Lines("events", "--follow", "--last", "1", "--vault", dvault.root)
    try:
        f.wait_line("warm_up", 30)  # started, history shown: now time each line
        for n in range(1, 4):
            written = time.monotonic()
            log("probe", n=n)
            assert f.wait_line(f"n={n}", 5) - written < LATENCY_S
        os.rename(dvault.vault.events_path, str(dvault.vault.events_path) + ".1")
        for n in range(4, 7):
            written = time.monotonic()
            log("probe", n=n)  # the first one makes the new events.jsonl
            assert f.wait_line(f"n={n}", 5) - written < LATENCY_S
    finally:
        f.stop()


def test_events_history_filters_seek_and_json(dvault):
    log = EventLog(dvault.vault.events_path)
    for n in range(300):
        log("step_started" if n % 3 else "claim_lost", project="P", plan=f"P-P-{n % 5:03d}",
            n=n)
    r = modulatio("events", "--last", "4", "--type", "claim_lost", "--plan", "P-P-002",
                  "--json", "--vault", dvault.root)
    assert r.returncode == 0, r.stderr
    got = [json.loads(line)["n"] for line in r.stdout.splitlines()]
    assert got == [252, 267, 282, 297]  # claim_lost: n % 3 == 0; P-P-002: n % 5 == 2
    r = modulatio("events", "--since", "2000-01-01T00:00:00Z", "--vault", dvault.root)
    assert len(r.stdout.splitlines()) == 300
    r = modulatio("events", "--since", "2999-01-01", "--vault", dvault.root)
    assert r.returncode == 0 and r.stdout == ""
    r = modulatio("events", "--since", "yesterday", "--vault", dvault.root)
    assert r.returncode == 2 and "ISO time" in r.stderr


def test_logs_follow_shows_the_running_steps_output_within_200ms(dvault, daemons):
    script = dvault.root / "talk.py"
    script.write_text(
        "import os, sys, time\n"
        "for n in range(3):\n"
        "    while not os.path.exists(f'go-{n}'):\n"
        "        time.sleep(0.005)\n"
        "    print(f'line {n}', flush=True)\n")
    write_plan(dvault, "P-P-001", [{"run": [PY, "-u", str(script)], "cwd": ".."},
                                   {"run": "echo second step"}])
    d = daemons(tick=0.5)
    wait_for(lambda: (dvault.plans / "P-P-001.runs" / "0-1.log").exists(), 30,
             "the step's log", diag=d.log)
    f = Lines("logs", "P-P-001", "--follow", "--vault", dvault.root)
    try:
        f.wait_line("==> step 1 attempt 1", 30)
        for n in range(3):
            written = time.monotonic()
            (dvault.root / f"go-{n}").touch()
            assert f.wait_line(f"line {n}", 10) - written < LATENCY_S + 0.1  # + the step's wait
        f.wait_line("==> step 2 attempt 1", 30)
        f.wait_line("second step", 30)
        assert f.proc.wait(timeout=30) == 0  # the plan completed: the follower ends
    finally:
        f.stop()
    r = modulatio("logs", "P-P-001", "--step", "2", "--vault", dvault.root)
    assert r.stdout.splitlines() == ["==> step 2 attempt 1 (P-P-001.runs/1-1.log) <==",
                                     "second step"]


def test_kickoff_refuses_a_held_plan_and_runs_a_free_one_on_the_terminal(dvault, daemons):
    write_plan(dvault, "P-P-001", [{"run": dvault.step(go=dvault.root / "go")}])
    d = daemons(tick=0.5)
    wait_for(lambda: starts(dvault, 0), 30, "the daemon's step", diag=d.log)
    r = modulatio("kickoff", "P-P-001", "--vault", dvault.root)
    assert r.returncode == 1 and "P-P-001 is held by" in r.stderr, r
    (dvault.root / "go").touch()
    wait_for(settled(dvault, "P-P-001", "completed"), 30, "the daemon's run", diag=d.log)
    d.signal(signal.SIGTERM)
    assert d.wait(30) == 0

    write_plan(dvault, "P-P-002", [{"run": "echo hello from step one"},
                                   {"run": "echo and from step two"}])
    dry = modulatio("kickoff", "P-P-002", "--dry-run", "--json", "--vault", dvault.root)
    shown = json.loads(dry.stdout)
    assert [s["command"] for s in shown["steps"]] == [
        "/bin/sh -c 'echo hello from step one'", "/bin/sh -c 'echo and from step two'"]
    assert shown["steps"][0]["env"]["MODULATIO_PLAN_ID"] == "P-P-002"
    assert plan(dvault, "P-P-002").status.value == "approved"  # a dry run claims nothing
    r = modulatio("kickoff", "P-P-002", "--vault", dvault.root)
    assert r.returncode == 0, r.stderr
    assert "hello from step one" in r.stdout and "and from step two" in r.stdout
    assert plan(dvault, "P-P-002").status.value == "completed"


def test_kickoff_interrupted_leaves_the_plan_resumable(dvault, daemons):
    write_plan(dvault, "P-P-001", [{"run": dvault.step(go=dvault.root / "go")},
                                   {"run": "echo done"}])
    k = Lines("kickoff", "P-P-001", "--vault", dvault.root)
    wait_for(lambda: starts(dvault, 0), 30, "the kickoff's step")
    os.killpg(k.proc.pid, signal.SIGINT)
    assert k.proc.wait(timeout=30) == 130
    p = plan(dvault, "P-P-001")
    assert p.status.value == "executing" and p.current_index == 0 and p.in_flight
    (dvault.root / "go").touch()
    d = daemons(tick=0.5)
    wait_for(settled(dvault, "P-P-001", "completed"), 30, "a daemon to resume it", diag=d.log)

"""Throughput with 1 and N daemons on one vault: does it grow with daemons?

PLANS approved plans of STEPS steps each, all of `true` (bookkeeping-bound) or of
`sleep 0.2` (sleep-bound); N daemons `daemon --once` started together on the
vault, timed until the last exits (each exits once nothing is left to claim);
every plan must end completed. Printed per N (over the whole run from the daemons'
launch, and over the working time alone, first step started to last step ended):
steps a second, the races lost
(`claim_lost` events) and the full scans per claim (the `scans` each daemon
tells in its `daemon_stopped` event), beside one daemon's figure from the same run.
Targets (issue 12): with 8 daemons, `true` steps at least one daemon's
throughput; `sleep 0.2` steps at least 0.9 x 8 x one daemon's.
BENCH_PLANS (160), BENCH_STEPS (3), BENCH_DAEMONS (8) change the sizes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from modulatio_d.ops.init import init

PLANS = int(os.environ.get("BENCH_PLANS", "160"))
STEPS = int(os.environ.get("BENCH_STEPS", "3"))
DAEMONS = int(os.environ.get("BENCH_DAEMONS", "8"))
STARTUP: dict[int, float | None] = {}  # daemons -> seconds until the last first heartbeat


def plan_text(n: int, command: str) -> str:
    subs = "".join(f'  - {{run: "{command}"}}\n' for _ in range(STEPS))
    return (f"---\nid: B-P-{n:05d}\ntitle: scale {n}\nstatus: approved\n"
            f"sub_objectives:\n{subs}current_index: 0\nreflection_log: []\n---\n")


def run(tmp: Path, daemons: int, command: str) -> tuple[float, float, int, float]:
    vault = init(tmp / f"v{daemons}")
    folder = vault.plans_dir("B")
    folder.mkdir(parents=True)
    for n in range(PLANS):
        (folder / f"B-P-{n:05d}.md").write_text(plan_text(n, command))
    os.sync()
    cmd = [sys.executable, "-m", "modulatio_d", "daemon", "--vault", str(vault.root), "--once",
           "--log-level", "warning", "--allow-root"]
    env = dict(os.environ, MODULATIO_ALLOW_ROOT="1")
    t = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL) for _ in range(daemons)]
    beats, up = vault.meta / "daemons", None
    while any(p.poll() is None for p in procs):
        if up is None and beats.is_dir() and len(os.listdir(beats)) >= daemons:
            up = time.perf_counter() - t  # every daemon has scanned once and beaten
        time.sleep(0.01)
    elapsed = time.perf_counter() - t
    STARTUP[daemons] = up
    done = sum("status: completed" in p.read_text() for p in folder.glob("*.md"))
    assert done == PLANS, f"{done} of {PLANS} plans completed with {daemons} daemons"
    events = [json.loads(line) for line in vault.events_path.read_text().splitlines()]
    lost = sum(e.get("event") == "claim_lost" for e in events)
    scans = sum(e.get("scans", 0) for e in events if e.get("event") == "daemon_stopped")
    claims = sum(e.get("event") == "claimed" for e in events)
    # The working time: from the first step started to the last step ended, by the
    # ledger's clock (the daemons' start-up and their last scan before exiting left out).
    ts = [datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) for e in events
          if e.get("event") in ("step_started", "step_ended")]
    work = (max(ts) - min(ts)).total_seconds()
    shutil.rmtree(vault.root)
    return elapsed, work, lost, scans / max(claims, 1)


def main() -> None:
    print(f"plans: {PLANS} x {STEPS} steps, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as t:
        for command, target in (("true", "target: >= 1 daemon's"),
                                ("sleep 0.2", f"target: >= 0.9 x {DAEMONS} x 1 daemon's")):
            one, one_work, _, one_scans = run(Path(t), 1, command)
            many, many_work, lost, scans = run(Path(t), DAEMONS, command)
            steps = PLANS * STEPS
            print(f"{command:<10} 1 daemon {steps / one:6.1f} steps/s   {DAEMONS} daemons "
                  f"{steps / many:6.1f} steps/s ({one / many:.2f}x; {target}); "
                  f"working time alone (first step started to last step ended): "
                  f"{steps / one_work:6.1f} -> {steps / many_work:6.1f} steps/s "
                  f"({one_work / many_work:.2f}x), "
                  f"{lost} races lost, full scans per claim {scans:.2f} "
                  f"(1 daemon: {one_scans:.2f}); every daemon up after "
                  f"{STARTUP[DAEMONS] or float('nan'):.2f} s (1 daemon: "
                  f"{STARTUP[1] or float('nan'):.2f} s)")


if __name__ == "__main__":
    main()

"""Throughput with 1 and N daemons on one vault: does it grow with daemons?

PLANS approved plans of STEPS steps each, all of `true` (bookkeeping-bound) or of
`sleep 0.2` (sleep-bound); N daemons `daemon --once` started together on the
vault, timed until the last exits (each exits once nothing is left to claim);
every plan must end completed. Printed per N (over the whole run from the daemons'
launch, and over the working time alone, first step started to last step ended):
steps a second, the races lost
(`claim_lost` events) and the full scans per claim (the `scans` each daemon
tells in its `daemon_stopped` event), beside one daemon's figure from the same run, and
the CPU time a step of all the daemons and their children (user + system: what other
load on the machine hardly moves; their start-up and exit, measured on a vault of no
plan, taken out; more a step with N daemons is work they make for each other).
The working time is taken to the nanosecond from the files (each step's log is made as
it starts: its mtime; each plan's last write ends it: the plan file's mtime), not from
the ledger's whole seconds. Per daemon (from the `step_ended` events, which name the
pid, the step's log and its duration): steps run, the median gap between the end of one
of its steps and the start of its next (its bookkeeping per step: the write-back, the
next claim), and the idle tail (from its last step's end to the last step's end of all).
Targets (issue 12): with 8 daemons, `true` steps at least one daemon's
throughput; `sleep 0.2` steps at least 0.9 x 8 x one daemon's.
BENCH_PLANS (160), BENCH_STEPS (3), BENCH_DAEMONS (8) change the sizes; BENCH_COMMANDS
("true,sleep 0.2") which steps are run.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bytecode import compile_package
from diskstate import creation_note

from modulatio_d.ops.init import init

PLANS = int(os.environ.get("BENCH_PLANS", "160"))
STEPS = int(os.environ.get("BENCH_STEPS", "3"))
DAEMONS = int(os.environ.get("BENCH_DAEMONS", "8"))
COMMANDS = os.environ.get("BENCH_COMMANDS", "true,sleep 0.2").split(",")
STARTUP: dict[int, float | None] = {}  # daemons -> seconds until the last first heartbeat
SPREAD: dict[int, str] = {}  # daemons -> the per-daemon figures, printed
CPU: dict[int, float] = {}  # daemons -> CPU seconds a step (the daemons and their steps)


def plan_text(n: int, command: str) -> str:
    subs = "".join(f'  - {{run: "{command}"}}\n' for _ in range(STEPS))
    return (f"---\nid: B-P-{n:05d}\ntitle: scale {n}\nstatus: approved\n"
            f"sub_objectives:\n{subs}current_index: 0\nreflection_log: []\n---\n")


def idle_cpu(tmp: Path, daemons: int, cmd: list[str], env: dict[str, str]) -> float:
    """CPU seconds of `daemons` daemons `--once` on a vault with no plan: their start-up
    and exit, taken out of the CPU a step."""
    vault = init(Path(tempfile.mkdtemp(prefix=f"idle{daemons}-", dir=tmp)) / "v")
    vault.plans_dir("B").mkdir(parents=True)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for p in [subprocess.Popen([*cmd, "--vault", str(vault.root), "--once", "--log-level",
                                "warning", "--allow-root"], env=env, stderr=subprocess.DEVNULL)
              for _ in range(daemons)]:
        p.wait()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime


def run(tmp: Path, daemons: int, command: str) -> tuple[float, float, int, float]:
    vault = init(Path(tempfile.mkdtemp(prefix=f"v{daemons}-", dir=tmp)) / "v")
    folder = vault.plans_dir("B")
    folder.mkdir(parents=True)
    for n in range(PLANS):
        (folder / f"B-P-{n:05d}.md").write_text(plan_text(n, command))
    os.sync()
    cmd = [sys.executable, "-m", "modulatio_d", "daemon", "--vault", str(vault.root), "--once",
           "--log-level", "warning", "--allow-root"]
    env = dict(os.environ, MODULATIO_ALLOW_ROOT="1")
    t = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = [subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL) for _ in range(daemons)]
    beats, up = vault.meta / "daemons", None
    while any(p.poll() is None for p in procs):
        if up is None and beats.is_dir() and len(os.listdir(beats)) >= daemons:
            up = time.perf_counter() - t  # every daemon has scanned once and beaten
        time.sleep(0.01)
    elapsed = time.perf_counter() - t
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[daemons] = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
                    - idle_cpu(tmp, daemons, cmd[:-6], env)) / (PLANS * STEPS)
    STARTUP[daemons] = up
    done = sum("status: completed" in p.read_text() for p in folder.glob("*.md"))
    assert done == PLANS, f"{done} of {PLANS} plans completed with {daemons} daemons"
    events = [json.loads(line) for line in vault.events_path.read_text().splitlines()]
    lost = sum(e.get("event") == "claim_lost" for e in events)
    scans = sum(e.get("scans", 0) for e in events if e.get("event") == "daemon_stopped")
    claims = sum(e.get("event") == "claimed" for e in events)
    # The working time: from the first step started (its log file made) to the last
    # plan written (its last step's result), to the nanosecond.
    ended = [e for e in events if e.get("event") == "step_ended"]
    start = {e["log"]: os.stat(vault.root / e["log"]).st_mtime_ns / 1e9 for e in ended}
    first = min(start.values())
    last = max(p.stat().st_mtime_ns / 1e9 for p in folder.glob("*.md"))
    work = last - first
    SPREAD[daemons] = _per_daemon(ended, start, last)
    return elapsed, work, lost, scans / max(claims, 1)


def _per_daemon(ended: list[dict], start: dict[str, float], last: float) -> str:
    """Steps, median gap between one step's end and the next's start, and idle tail,
    per daemon (pid)."""
    spans: dict[int, list[tuple[float, float]]] = {}
    for e in ended:
        t = start[e["log"]]
        spans.setdefault(e["pid"], []).append((t, t + float(e["duration_s"])))
    out = []
    for _pid, s in sorted(spans.items(), key=lambda kv: -len(kv[1])):
        s.sort()
        gaps = [b[0] - a[1] for a, b in zip(s, s[1:], strict=False)]
        gap = statistics.median(gaps) * 1000 if gaps else float("nan")
        out.append(f"{len(s)} steps, gap {gap:.1f} ms, tail {last - s[-1][1]:.2f} s")
    return "; ".join(out)


def main() -> None:
    print(f"plans: {PLANS} x {STEPS} steps, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    # Nothing is removed until every run has ended: on an ext4 without a journal (this
    # machine's) file creations grow dearer after removals (bench_plans.py), and the
    # run with N daemons, which follows the one with 1, would pay for its clean-up.
    with tempfile.TemporaryDirectory() as t:
        note = creation_note(t)
        if note:
            print(note)
        for command in COMMANDS:
            target = "target: >= 1 daemon's" if command == "true" else \
                f"target: >= 0.9 x {DAEMONS} x 1 daemon's"
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
            print(f"  CPU a step (user + system of the daemons and their steps, less their "
                  f"start-up and exit on a vault of no plan): 1 daemon "
                  f"{CPU[1] * 1000:.1f} ms, {DAEMONS} daemons {CPU[DAEMONS] * 1000:.1f} ms")
            print(f"  per daemon (steps, median gap from a step's end to its next start, "
                  f"idle tail): 1 daemon: {SPREAD[1]}\n  {DAEMONS} daemons: {SPREAD[DAEMONS]}")


if __name__ == "__main__":
    compile_package()  # time the bytecode a user imports (bench/bytecode.py)
    main()

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
The N daemons are run twice: as N processes started apart, and as one pool of N
(`daemon --workers N --once`: the workers forked from the supervisor, see
daemon/worker_fork.py).
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
STARTUP: dict[str, float | None] = {}  # run -> seconds until the last first heartbeat
SPREAD: dict[str, str] = {}  # run -> the per-daemon figures, printed
CPU: dict[str, float] = {}  # run -> CPU seconds a step (the daemons and their steps)


def plan_text(n: int, command: str) -> str:
    subs = "".join(f'  - {{run: "{command}"}}\n' for _ in range(STEPS))
    return (f"---\nid: B-P-{n:05d}\ntitle: scale {n}\nstatus: approved\n"
            f"sub_objectives:\n{subs}current_index: 0\nreflection_log: []\n---\n")


def label(daemons: int, pool: bool) -> str:
    return f"pool of {daemons}" if pool else f"{daemons} daemon" + "s" * (daemons > 1)


def launch(root: Path, daemons: int, pool: bool) -> list[subprocess.Popen]:
    """`daemons` daemons `--once` on the vault: as many processes, or one pool of them."""
    cmd = [sys.executable, "-m", "modulatio_d", "daemon", "--vault", str(root), "--once",
           "--log-level", "warning", "--allow-root"]
    env = dict(os.environ, MODULATIO_ALLOW_ROOT="1")
    if pool:
        return [subprocess.Popen([*cmd, "--workers", str(daemons)], env=env,
                                 stderr=subprocess.DEVNULL)]
    return [subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL) for _ in range(daemons)]


def idle_cpu(tmp: Path, daemons: int, pool: bool) -> float:
    """CPU seconds of the same daemons on a vault with no plan: their start-up and exit,
    taken out of the CPU a step."""
    vault = init(Path(tempfile.mkdtemp(prefix=f"idle{daemons}-", dir=tmp)) / "v")
    vault.plans_dir("B").mkdir(parents=True)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for p in launch(vault.root, daemons, pool):
        p.wait()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime


def run(tmp: Path, daemons: int, command: str, pool: bool = False,
        ) -> tuple[float, float, int, float]:
    key = label(daemons, pool)
    vault = init(Path(tempfile.mkdtemp(prefix=f"v{daemons}{'p' * pool}-", dir=tmp)) / "v")
    folder = vault.plans_dir("B")
    folder.mkdir(parents=True)
    for n in range(PLANS):
        (folder / f"B-P-{n:05d}.md").write_text(plan_text(n, command))
    os.sync()
    t = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = launch(vault.root, daemons, pool)
    beats, up = vault.meta / "daemons", None
    while any(p.poll() is None for p in procs):
        if up is None and beats.is_dir() and len(os.listdir(beats)) >= daemons:
            up = time.perf_counter() - t  # every daemon has scanned once and beaten
        time.sleep(0.01)
    elapsed = time.perf_counter() - t
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert all(p.returncode == 0 for p in procs), f"{key}: {[p.returncode for p in procs]}"
    CPU[key] = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
                - idle_cpu(tmp, daemons, pool)) / (PLANS * STEPS)
    STARTUP[key] = up
    done = sum("status: completed" in p.read_text() for p in folder.glob("*.md"))
    assert done == PLANS, f"{done} of {PLANS} plans completed with {key}"
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
    SPREAD[key] = _per_daemon(ended, start, last)
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
            steps = PLANS * STEPS
            print(f"{command}: 1 daemon {steps / one:6.1f} steps/s, working time alone "
                  f"(first step started to last step ended) {steps / one_work:6.1f} steps/s, "
                  f"full scans per claim {one_scans:.2f}, up after "
                  f"{STARTUP['1 daemon'] or float('nan'):.2f} s, CPU a step (user + system "
                  f"of the daemons and their steps, less their start-up and exit on a vault "
                  f"of no plan) {CPU['1 daemon'] * 1000:.1f} ms\n"
                  f"  per daemon (steps, median gap from a step's end to its next start, "
                  f"idle tail): {SPREAD['1 daemon']}")
            for pool in (False, True):
                key = label(DAEMONS, pool)
                many, many_work, lost, scans = run(Path(t), DAEMONS, command, pool)
                print(f"  {key:<10} {steps / many:6.1f} steps/s ({one / many:.2f}x; {target});"
                      f" working time {steps / many_work:6.1f} steps/s "
                      f"({one_work / many_work:.2f}x), {lost} races lost, full scans per "
                      f"claim {scans:.2f}, every daemon up after "
                      f"{STARTUP[key] or float('nan'):.2f} s, CPU a step "
                      f"{CPU[key] * 1000:.1f} ms\n    per daemon: {SPREAD[key]}")


if __name__ == "__main__":
    compile_package()  # time the bytecode a user imports (bench/bytecode.py)
    main()

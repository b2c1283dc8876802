"""Resident memory of an idle daemon on a 10,000-plan vault, and its cold start.

Cold start: spawn -> the daemon's first heartbeat (written after its first scan), beside
the floor of reading every plan file once in this process, measured just before each
start; BENCH_ROUNDS (3) starts, medians printed. Also the CPU time (user + system) the
daemon had used when its heartbeat appeared (from /proc: less moved by other processes
than the wall clock on a loaded machine) beside the floor's own.

Baseline in the same run: a Python process that imported the same modules
(modulatio_d.daemon.loop and watchdog's observer) and did nothing else, so the
difference is what the daemon keeps about the vault; started once the last daemon has
written its heartbeat, not beside its start (2 cores). Target (issue 3): < 60 MB at
10,000 plans; issue 12: < 50 MB at BENCH_PLANS=100000. RSS does not depend on the
machine's load (only the wait for three idle ticks does). Also printed: the peak (VmHWM).
BENCH_VAULT_CACHE=<folder> keeps the generated vault for the next run (bench/vaultgen.py).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bytecode import compile_package  # noqa: E402
from vaultgen import vault_for  # noqa: E402

PLANS = int(os.environ.get("BENCH_PLANS", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_floor(root: Path) -> tuple[float, float]:
    """Reading every plan file once: the faster of two passes (the first warms the cache),
    as (wall, CPU) seconds."""
    best, files = (float("inf"), float("inf")), 0
    for _ in range(2):
        t, c, files = time.perf_counter(), time.process_time(), 0
        for top in os.scandir(root):
            if top.is_dir() and not top.name.startswith("."):
                for e in os.scandir(os.path.join(top.path, "plans")):
                    with open(e.path, "rb") as f:
                        f.read()
                    files += 1
        best = min(best, (time.perf_counter() - t, time.process_time() - c))
    assert files, f"no plan files in {root}"
    return best


def start_daemon(root: Path) -> tuple[subprocess.Popen, float, float, Path]:
    """A daemon on `root`, waited for until its first heartbeat: (process, seconds from
    spawn to the heartbeat, its CPU seconds then, its heartbeat file)."""
    daemon = subprocess.Popen([sys.executable, "-m", "modulatio_d", "daemon", "--vault",
                               str(root), "--tick-seconds", "1", "--log-level", "warning",
                               "--allow-root"])
    spawned = time.perf_counter()
    own = root / ".modulatio" / "daemons" / f"{socket.gethostname()}.{daemon.pid}.json"
    while time.perf_counter() - spawned < 600:  # not a killed run's heartbeat: its pid
        if own.exists():
            return daemon, time.perf_counter() - spawned, cpu_s(daemon.pid), own
        if daemon.poll() is not None:
            break
        time.sleep(0.005)
    daemon.kill()
    raise RuntimeError("the daemon wrote no heartbeat")


def stop(daemon: subprocess.Popen) -> None:
    daemon.terminate()
    daemon.wait(30)


def main() -> None:
    m = statistics.median
    with tempfile.TemporaryDirectory() as tmp:
        root = vault_for(PLANS, Path(tmp))
        starts, floors = [], []
        for i in range(ROUNDS):  # the floor just before each start, then the start
            floors.append(read_floor(root))
            daemon, first_beat, cpu, own = start_daemon(root)
            starts.append((first_beat, cpu))
            if i < ROUNDS - 1:
                stop(daemon)
        base = subprocess.Popen([sys.executable, "-c",
                                 "import modulatio_d.daemon.loop, watchdog.observers, sys; "
                                 "print('ready', flush=True); sys.stdin.read()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            base.stdout.readline()
            ticks = 0
            last = None
            end = time.time() + 300
            while ticks < 3 and time.time() < end:  # three idle ticks after the first scan
                try:
                    t = json.loads(own.read_text())["last_tick"]
                except (OSError, ValueError):
                    t = last
                if t != last:
                    ticks, last = ticks + 1, t
                time.sleep(0.2)
            assert ticks >= 3, "the daemon did not tick three times in 300 s"
            daemon_mb, base_mb = rss_mb(daemon.pid), rss_mb(base.pid)
            peak_mb = rss_mb(daemon.pid, "VmHWM")
        finally:
            stop(daemon)
            base.kill()
            base.wait(30)
    wall, cpu = m(s[0] for s in starts), m(s[1] for s in starts)
    read_s, read_cpu = m(f[0] for f in floors), m(f[1] for f in floors)
    print(f"plans: {PLANS}   rounds: {ROUNDS}   load average: {os.getloadavg()[0]:.2f}")
    print(f"cold start {wall:6.2f} s (spawn -> first heartbeat, after the first scan)   "
          f"read floor {read_s:6.2f} s (every plan file read once)   ratio "
          f"{wall / read_s:.2f}x (target <= 2x at 100,000 plans); rounds: "
          + ", ".join(f"{s[0]:.2f}/{f[0]:.2f}" for s, f in zip(starts, floors, strict=True)))
    print(f"cold start CPU {cpu:6.2f} s (the daemon's user + system at its first heartbeat)"
          f"   read floor CPU {read_cpu:6.2f} s   ratio {cpu / read_cpu:.2f}x")
    print(f"idle daemon RSS {daemon_mb:6.1f} MB   imports-only baseline {base_mb:6.1f} MB   "
          f"vault state {daemon_mb - base_mb:5.1f} MB (target daemon < 60 MB; < 50 MB at "
          f"100,000 plans); peak {peak_mb:6.1f} MB")


if __name__ == "__main__":
    compile_package()  # time the bytecode a user imports (bench/bytecode.py)
    main()

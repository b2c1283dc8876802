"""Resident memory of an idle daemon on a 10,000-plan vault.

Also the cold start: spawn -> the daemon's first heartbeat (written after its
first scan), beside the floor of reading every plan file once in this process.

Baseline in the same run: a Python process that imported the same modules
(modulatio_d.daemon.loop and watchdog's observer) and did nothing else, so the
difference is what the daemon keeps about the vault. Target (issue 3): < 60 MB at
10,000 plans; issue 12: < 50 MB at BENCH_PLANS=100000. RSS does not depend on the
machine's load (only the wait for three idle ticks does). Also printed: the peak (VmHWM).
BENCH_VAULT_CACHE=<folder> keeps the generated vault for the next run (bench/vaultgen.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vaultgen import vault_for  # noqa: E402

PLANS = int(os.environ.get("BENCH_PLANS", "10000"))


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def read_floor(root: Path) -> float:
    """Reading every plan file once: the faster of two passes (the first warms the cache)."""
    best, files = float("inf"), 0
    for _ in range(2):
        t, files = time.perf_counter(), 0
        for top in os.scandir(root):
            if top.is_dir() and not top.name.startswith("."):
                for e in os.scandir(os.path.join(top.path, "plans")):
                    with open(e.path, "rb") as f:
                        f.read()
                    files += 1
        best = min(best, time.perf_counter() - t)
    assert files, f"no plan files in {root}"
    return best


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = vault_for(PLANS, Path(tmp))
        read_s = read_floor(root)
        base = subprocess.Popen([sys.executable, "-c",
                                 "import modulatio_d.daemon.loop, watchdog.observers, sys; "
                                 "print('ready', flush=True); sys.stdin.read()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        daemon = subprocess.Popen([sys.executable, "-m", "modulatio_d", "daemon", "--vault",
                                   str(root), "--tick-seconds", "1", "--log-level", "warning",
                                   "--allow-root"])
        spawned = time.perf_counter()
        try:
            beats = root / ".modulatio" / "daemons"
            first_beat = None
            own = beats / f"{socket.gethostname()}.{daemon.pid}.json"  # not a killed run's
            while first_beat is None and time.perf_counter() - spawned < 600:
                if own.exists():
                    first_beat = time.perf_counter() - spawned
                time.sleep(0.005)
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
            daemon.terminate()
            base.kill()
            daemon.wait(30)
            base.wait(30)
    print(f"plans: {PLANS}")
    print(f"cold start {first_beat or float('nan'):6.2f} s (spawn -> first heartbeat, after "
          f"the first scan)   read floor {read_s:6.2f} s (every plan file read once)   ratio "
          f"{(first_beat or float('nan')) / read_s:.2f}x (target <= 2x at 100,000 plans)")
    print(f"idle daemon RSS {daemon_mb:6.1f} MB   imports-only baseline {base_mb:6.1f} MB   "
          f"vault state {daemon_mb - base_mb:5.1f} MB (target daemon < 60 MB; < 50 MB at "
          f"100,000 plans); peak {peak_mb:6.1f} MB")


if __name__ == "__main__":
    main()

"""Scan cost over a 10,000-plan vault, beside its floors measured in the same run.

idle tick  : Scanner.scan() when nothing changed   vs  scandir + stat() of every plan file
cold start : the first Scanner.scan() of a process vs  scandir + reading every plan file once
The scanner judges trust as a daemon's does (store/trust.py); the CPU time (user + system)
of each side is printed too (less moved than the wall clock by other processes).
Target (issue 3): idle within 2x of the stat floor, cold within 3x of the read floor;
issue 12, at BENCH_PLANS=100000: idle within 1.5x, cold within 2x. BENCH_ROUNDS (7) rounds,
medians printed; BENCH_VAULT_CACHE=<folder> keeps the generated vault (bench/vaultgen.py).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vaultgen import vault_for  # noqa: E402

from modulatio_d.daemon.scan import Scanner  # noqa: E402
from modulatio_d.store import trust  # noqa: E402
from modulatio_d.store.vault import Vault  # noqa: E402

PLANS = int(os.environ.get("BENCH_PLANS", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))


def plan_entries(vault: Vault):
    for project in vault.projects():
        yield from vault.files(project, "plans")


def floor_stat(vault: Vault) -> float:
    t = time.perf_counter()
    for e in plan_entries(vault):
        os.stat(e.path)
    return time.perf_counter() - t


def floor_read(vault: Vault) -> float:
    t = time.perf_counter()
    for e in plan_entries(vault):
        with open(e.path, "rb") as f:
            f.read()
    return time.perf_counter() - t


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cpu_of(fn, cpu: list[float]) -> Callable[[], object]:
    """`fn`, its CPU time (user + system) appended to `cpu` at each call."""
    def run() -> object:
        c = time.process_time()
        try:
            return fn()
        finally:
            cpu.append(time.process_time() - c)
    return run


def scanner(vault: Vault) -> Scanner:
    """A Scanner with a daemon's trust checks (store/trust.py)."""
    checks = trust.Checks(vault.root, lambda *a, **k: None, vault, time.monotonic)
    checks.use(trust.Policy.build(vault.root), None)
    return Scanner(vault, None, lambda *a, **k: None, trust=checks)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = vault_for(PLANS, Path(tmp))
        vault = Vault(root)
        now = datetime.now(UTC)
        floor_read(vault)  # warm the page cache once, for both sides alike
        cold, read, cold_cpu, read_cpu = [], [], [], []
        for _ in range(ROUNDS):
            read.append(timed(cpu_of(lambda: floor_read(vault), read_cpu)))
            s = scanner(vault)
            cold.append(timed(cpu_of(lambda s=s: s.scan(now), cold_cpu)))
        idle, stat, idle_cpu, stat_cpu = [], [], [], []
        for _ in range(ROUNDS):
            stat.append(timed(cpu_of(lambda: floor_stat(vault), stat_cpu)))
            idle.append(timed(cpu_of(lambda: s.scan(now), idle_cpu)))
        m = statistics.median
        print(f"plans: {PLANS}   rounds: {ROUNDS}   load average: {os.getloadavg()[0]:.2f}")
        print(f"idle tick   {m(idle) * 1000:8.1f} ms   stat floor {m(stat) * 1000:8.1f} ms   "
              f"ratio {m(idle) / m(stat):.2f}x (target <= 2x; <= 1.5x at 100,000)   CPU "
              f"{m(idle_cpu) * 1000:.0f} / {m(stat_cpu) * 1000:.0f} ms: "
              f"{m(idle_cpu) / m(stat_cpu):.2f}x")
        print(f"cold start  {m(cold) * 1000:8.1f} ms   read floor {m(read) * 1000:8.1f} ms   "
              f"ratio {m(cold) / m(read):.2f}x (target <= 3x; <= 2x at 100,000)   CPU "
              f"{m(cold_cpu) * 1000:.0f} / {m(read_cpu) * 1000:.0f} ms: "
              f"{m(cold_cpu) / m(read_cpu):.2f}x")


if __name__ == "__main__":
    main()

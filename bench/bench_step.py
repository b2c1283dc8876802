"""Daemon bookkeeping per sub-objective, beside the floors it cannot go under.

A plan of STEPS shell steps `true` runs under `modulatio daemon --once`; the
same plan with one step gives the fixed cost (start-up, scan, claim), so
    per step = (T[STEPS + 1] - T[1]) / STEPS.
Floors measured in the same run and folder:
- spawn: starting and reaping `sh -c true` through the runner's own Child
  (own process group, PR_SET_PDEATHSIG, a log file): the step's own cost;
- fsync: the writes one step needs: one plan rewrite (the attempt's result
  and the next step's in_flight record go in one write), fsynced with its
  folder, one fsynced usage append, and the owned-keys record (atomic, not
  durable: store/owned_keys.py) with its log line appended, with the plan
  growing by one reflection entry a step, as it does.
bookkeeping = per step - spawn; the target is "close to the fsync floor".
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modulatio_d.daemon.child import Child, Launch
from modulatio_d.ops.init import init
from modulatio_d.store import atomic, usage

STEPS = int(os.environ.get("BENCH_STEPS", "200"))
ENTRY_BYTES = 230            # one reflection_log line as the daemon writes it (measured)


def plan_text(steps: int) -> str:
    subs = "".join('  - {run: "true"}\n' for _ in range(steps))
    return (f"---\nid: B-P-001\ntitle: bench   # comment\nstatus: approved\n"
            f"sub_objectives:\n{subs}current_index: 0\nreflection_log: []\n---\nbody\n")


def run_daemon(steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        vault = init(Path(tmp) / "v")
        folder = vault.plans_dir("B")
        folder.mkdir(parents=True)
        (folder / "B-P-001.md").write_text(plan_text(steps))
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "modulatio_d", "daemon", "--vault",
                        str(vault.root), "--once", "--log-level", "warning", "--allow-root"],
                       check=True)
        elapsed = time.perf_counter() - t
        assert "status: completed" in (folder / "B-P-001.md").read_text()
        return elapsed


def spawn_floor(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        launch = Launch(["/bin/sh", "-c", "true"], dict(os.environ), Path(tmp))
        t = time.perf_counter()
        for i in range(n):
            log = os.open(Path(tmp) / f"{i}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            child = Child(launch, Path(tmp) / f"{i}.log", (subprocess.DEVNULL, log, log))
            os.close(log)
            child.proc.wait()
            child.close()
        return (time.perf_counter() - t) / n


def fsync_floor(n: int) -> float:
    """The durable writes of n steps, with files that grow as the daemon's do.

    Each step rewrites the plan with one more reflection_log line, rewrites the
    record (small: its copy of the log is a file of its own, appended to).
    """
    entry = b"  - " + b"x" * (ENTRY_BYTES - 5) + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "p.md"
        plan.write_text(plan_text(STEPS))
        record = Path(tmp) / "r.json"
        use = Path(tmp) / "u.jsonl"
        t = time.perf_counter()
        for _ in range(n):
            atomic.rewrite(plan, lambda raw: raw + entry)
            atomic.replace(record, b"x" * 300, durable=False)  # the record, its log aside
            with open(record.with_suffix(".log.jsonl"), "ab") as f:
                f.write(entry)
            usage.append(use, [{"input_tokens": 0}])
        return (time.perf_counter() - t) / n


def main() -> None:
    one = min(run_daemon(1) for _ in range(3))
    full = min(run_daemon(STEPS + 1) for _ in range(3))
    per_step = (full - one) / STEPS
    spawn = min(spawn_floor(STEPS) for _ in range(3))
    fsync = min(fsync_floor(STEPS) for _ in range(3))  # best of 3, as the daemon runs
    book = per_step - spawn
    print(f"steps: {STEPS}")
    print(f"per step     {per_step * 1000:6.2f} ms   (daemon, wall clock)")
    print(f"spawn floor  {spawn * 1000:6.2f} ms   (sh -c true through the runner's Child)")
    print(f"bookkeeping  {book * 1000:6.2f} ms   fsync floor {fsync * 1000:6.2f} ms   "
          f"ratio {book / fsync:.2f}x")


if __name__ == "__main__":
    main()

"""A long plan runs to completion, what a step costs early and late in it, and the floor.

One plan of STEPS one-line steps (`- {run: "true"}`) through `daemon --once`
(default 3,000; BENCH_STEPS=20000 is issue 12's "runs to completion"). It must
end `completed` with STEPS reflection entries in all (the plan file keeps a
window of them, the rest are in `<plan-id>.reflection_log.jsonl` beside it:
docs/plan-file.md). The cost of step k is the time from its log file's creation
to the next step's (nanosecond times of the `.runs/` logs; the plan's own times
are in seconds); printed: the median of steps 50-250 and of the 200 steps before
the last 50, and beside each the floor of one step sampled at the same moments
(every BENCH_SAMPLE_S, default 0.2 s, in a thread): fork/exec of `true` (a plain
spawn) plus the durable writes a step needs (one plan rewrite of the plan's size,
fsynced with its folder, and one fsynced usage append). Targets (issue 12): a
step within 2x its floor, and late within 1.2x of early once each is divided
by its floor (on a loaded machine the raw ratio is the load's). Then the
write-back alone (HeldPlan.update in process, no child) over a plan of
min(STEPS, BENCH_WRITEBACK_STEPS=3000) steps, by step: the part of a step that
could grow with the history.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bytecode import compile_package
from diskstate import creation_note

from modulatio_d.core import markdown
from modulatio_d.ops.init import init
from modulatio_d.store import atomic, reflections, steplogs, usage
from modulatio_d.store.plan_file import HeldPlan

STEPS = int(os.environ.get("BENCH_STEPS", "3000"))
SAMPLE_S = float(os.environ.get("BENCH_SAMPLE_S", "0.2"))
WRITEBACK_STEPS = int(os.environ.get("BENCH_WRITEBACK_STEPS", "3000"))


def plan_text(steps: int) -> str:
    subs = "".join('  - {run: "true"}\n' for _ in range(steps))
    return (f"---\nid: B-P-001\ntitle: long   # comment\nstatus: approved\n"
            f"sub_objectives:\n{subs}current_index: 0\nreflection_log: []\n---\nbody\n")


class Floor:
    """One step's floor: spawn `true`, rewrite a copy of the plan durably (atomic.rewrite:
    temp file, fsync, swap, folder fsync), one fsynced usage append. Sampled every
    SAMPLE_S while the daemon runs (a thread), so that each part of the run is compared
    with the floor of the same moments: the machine's load moves both alike."""

    def __init__(self, plan: Path):
        self.plan, self.samples = plan, []  # (wall time, seconds)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with tempfile.TemporaryDirectory(dir=self.plan.parent.parent) as tmp:
            copy = Path(tmp) / "p.md"
            copy.write_bytes(self.plan.read_bytes())
            use = Path(tmp) / "p.usage.jsonl"
            while not self.stop.wait(SAMPLE_S):
                t = time.perf_counter()
                subprocess.run(["true"], check=True)
                atomic.rewrite(copy, lambda raw: raw)
                usage.append(use, [{"input_tokens": 0}])
                self.samples.append((time.time(), time.perf_counter() - t))

    def between(self, a: float, b: float) -> float:
        """The median floor sampled from wall time a to b (the nearest 5 when none)."""
        inside = [d for t, d in self.samples if a <= t <= b]
        if len(inside) < 5:
            mid = (a + b) / 2
            inside = [d for _, d in sorted(self.samples, key=lambda s: abs(s[0] - mid))[:5]]
        return statistics.median(inside)


def writeback(n: int) -> tuple[list[float], list[float]]:
    """Seconds (wall clock, and CPU of this process: user + system, which the other load
    of the machine hardly moves) of each of n write-backs of a step (its entry, the next
    index and in_flight: HeldPlan.update, in process, no child) on a plan of n steps:
    the part of a step that could depend on the plan's history."""
    with tempfile.TemporaryDirectory() as tmp:
        vault = init(Path(tmp) / "v")
        folder = vault.plans_dir("B")
        folder.mkdir(parents=True)
        plan = folder / "B-P-001.md"
        plan.write_text(plan_text(n).replace("status: approved", "status: executing"))
        held, times, cpu = HeldPlan(vault, plan), [], []
        for k in range(n):
            entry = {"index": k, "title": "true", "attempt": 1, "outcome": "ok",
                     "exit": "exit 0", "started_at": "2026-12-02T04:17:21Z",
                     "ended_at": "2026-12-02T04:17:21Z", "duration_s": 0.005,
                     "decision": "continue", "summary": "",
                     "log": f"B-P-001.runs/{k + 1:04d}-01.log", "token": 1}
            flight = {"index": k + 1, "attempt": 1, "token": 1,
                      "started_at": "2026-12-02T04:17:21Z"} if k + 1 < n else None
            t, c = time.perf_counter(), time.process_time()
            held.update({"reflection_log": [*held.plan.reflection_log, entry],
                         "current_index": k + 1, "in_flight": flight})
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        return times, cpu


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        vault = init(Path(tmp) / "v")
        folder = vault.plans_dir("B")
        folder.mkdir(parents=True)
        plan = folder / "B-P-001.md"
        plan.write_text(plan_text(STEPS))
        floor = Floor(plan)
        floor.thread.start()
        t, r = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "modulatio_d", "daemon", "--vault",
                        str(vault.root), "--once", "--log-level", "warning", "--allow-root"],
                       check=True, env=dict(os.environ, MODULATIO_ALLOW_ROOT="1"))
        elapsed = time.perf_counter() - t
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        user, system = cpu.ru_utime - r.ru_utime, cpu.ru_stime - r.ru_stime
        floor.stop.set()
        floor.thread.join()
        text = plan.read_text()
        parsed = markdown.load(plan, text).data
        moved = int((parsed.get("reflection_archived") or {}).get("entries") or 0)
        window = parsed["reflection_log"]
        log = [*reflections.read(plan, moved), *window]
        assert parsed["status"] == "completed", parsed["status"]
        assert len(log) == STEPS, len(log)
        assert [e["index"] for e in log] == list(range(STEPS)), "entries out of order"
        runs = plan.with_suffix(".runs")
        starts = [os.stat(runs / steplogs.names(k, 1)[0]).st_mtime_ns / 1e9
                  for k in range(STEPS)]
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        # steps 50-250 and the 200 before the last 50: wide enough for floor samples
        early, late = statistics.median(gaps[50:250]), statistics.median(gaps[-250:-50])
        early_floor = floor.between(starts[50], starts[250])
        late_floor = floor.between(starts[-250], starts[-50])
        if note := creation_note(tmp):
            print(note)
        print(f"steps: {STEPS}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
              f"cores; plan file at the end {len(text.encode()) / 1e6:.2f} MB "
              f"({len(window)} entries in it, {moved} moved beside it)")
        print(f"completed in {elapsed:.1f} s ({elapsed / STEPS * 1000:.1f} ms a step); CPU a "
              f"step (the daemon, its start-up and its steps): user {user / STEPS * 1000:.2f} "
              f"ms, system {system / STEPS * 1000:.2f} ms")
        print(f"step ~150: {early * 1000:.1f} ms   step ~{STEPS - 150}: {late * 1000:.1f} ms   "
              f"ratio {late / early:.2f}x")
        print(f"floor at the same moments (spawn true + plan rewrite + usage append, "
              f"fsynced; {len(floor.samples)} samples): {early_floor * 1000:.1f} ms and "
              f"{late_floor * 1000:.1f} ms")
        print(f"step / floor: ~150 {early / early_floor:.2f}x, ~{STEPS - 150} "
              f"{late / late_floor:.2f}x (target <= 2x); late against early, the load "
              f"taken out: {(late / late_floor) / (early / early_floor):.2f}x (target <= 1.2x)")
    n = min(STEPS, WRITEBACK_STEPS)
    for what, times in zip(("wall clock", "CPU"), writeback(n), strict=True):
        by = "  ".join(f"~{k}: {statistics.median(times[k - 50:k + 50]) * 1000:.1f}"
                       for k in range(100, n - 49, max(100, (n // 10) // 100 * 100)))
        early, late = statistics.median(times[50:150]), statistics.median(times[-150:-50])
        print(f"write-back alone, {what} (HeldPlan.update in process, ms, median of 100): "
              f"{by}\n  ~100 {early * 1000:.1f} ms, ~{n - 100} {late * 1000:.1f} ms: "
              f"ratio {late / early:.2f}x")


if __name__ == "__main__":
    compile_package()  # time the bytecode a user imports (bench/bytecode.py)
    main()

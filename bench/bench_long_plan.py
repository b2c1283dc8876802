"""A long plan runs to completion, what a step costs early and late in it, and the floor.

One plan of STEPS one-line steps (`- {run: "true"}`) through `daemon --once`
(default 3,000; BENCH_STEPS=20000 is issue 12's "runs to completion"). It must
end `completed` with STEPS reflection entries in all (the plan file keeps a
window of them, the rest are in `<plan-id>.reflection_log.jsonl` beside it:
docs/plan-file.md). The cost of step k is the time from its log file's creation
to the next step's (nanosecond times of the `.runs/` logs; the plan's own times
are in seconds); printed: the median around step 100 and around step STEPS - 100,
their ratio (issue 12's target: within 1.2x), and in the same run the floor of
one step: fork/exec of `true` (a plain spawn) plus the durable writes a step
needs (one plan rewrite of the plan's size, fsynced with its folder, and one
fsynced usage append). Target: a step within 2x that floor.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modulatio_d.core import markdown
from modulatio_d.ops.init import init
from modulatio_d.store import atomic, reflections, steplogs, usage

STEPS = int(os.environ.get("BENCH_STEPS", "3000"))
FLOOR_N = int(os.environ.get("BENCH_FLOOR_N", "200"))


def plan_text(steps: int) -> str:
    subs = "".join('  - {run: "true"}\n' for _ in range(steps))
    return (f"---\nid: B-P-001\ntitle: long   # comment\nstatus: approved\n"
            f"sub_objectives:\n{subs}current_index: 0\nreflection_log: []\n---\nbody\n")


def floor(plan: Path, n: int) -> float:
    """One step's floor, the median of n: spawn `true`, rewrite a copy of `plan` durably
    (atomic.rewrite: temp file, fsync, swap, folder fsync), one fsynced usage append."""
    with tempfile.TemporaryDirectory(dir=plan.parent) as tmp:
        copy = Path(tmp) / "p.md"
        copy.write_bytes(plan.read_bytes())
        use = Path(tmp) / "p.usage.jsonl"
        times = []
        for _ in range(n):
            t = time.perf_counter()
            subprocess.run(["true"], check=True)
            atomic.rewrite(copy, lambda raw: raw)
            usage.append(use, [{"input_tokens": 0}])
            times.append(time.perf_counter() - t)
        return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        vault = init(Path(tmp) / "v")
        folder = vault.plans_dir("B")
        folder.mkdir(parents=True)
        plan = folder / "B-P-001.md"
        plan.write_text(plan_text(STEPS))
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "modulatio_d", "daemon", "--vault",
                        str(vault.root), "--once", "--log-level", "warning", "--allow-root"],
                       check=True, env=dict(os.environ, MODULATIO_ALLOW_ROOT="1"))
        elapsed = time.perf_counter() - t
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
        early = statistics.median(gaps[90:110])
        late = statistics.median(gaps[-110:-90])
        base = floor(plan, FLOOR_N)
        print(f"steps: {STEPS}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
              f"cores; plan file at the end {len(text.encode()) / 1e6:.2f} MB "
              f"({len(window)} entries in it, {moved} moved beside it)")
        print(f"completed in {elapsed:.1f} s ({elapsed / STEPS * 1000:.1f} ms a step)")
        print(f"step ~100: {early * 1000:.1f} ms   step ~{STEPS - 100}: {late * 1000:.1f} ms   "
              f"ratio {late / early:.2f}x (target <= 1.2x)")
        print(f"floor (spawn true + plan rewrite + usage append, fsynced): "
              f"{base * 1000:.1f} ms   step ~{STEPS - 100} / floor {late / base:.2f}x "
              f"(target <= 2x)")


if __name__ == "__main__":
    main()

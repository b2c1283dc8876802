"""A long plan runs to completion, and what a step costs early and late in it.

One plan of STEPS one-line steps (`- {run: "true"}`) through `daemon --once`
(default 20,000: about 5 MB of reflection_log, past the 1 MiB a person's part
of a plan may have). It must end `completed` with STEPS entries. The cost of
step k is the time from its log file's creation to the next step's (the
`.runs/<k>-1.log` files, nanosecond times; the plan's own times are in
seconds); printed: the median around step 100 and
around step STEPS - 100, and their ratio (issue 12's target: within 1.2x, a
flat per-step cost; bench_step.py gives the per-step floor). BENCH_STEPS
changes the size.
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

STEPS = int(os.environ.get("BENCH_STEPS", "20000"))


def plan_text(steps: int) -> str:
    subs = "".join('  - {run: "true"}\n' for _ in range(steps))
    return (f"---\nid: B-P-001\ntitle: long   # comment\nstatus: approved\n"
            f"sub_objectives:\n{subs}current_index: 0\nreflection_log: []\n---\nbody\n")


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
        data = markdown.load(plan, text).data
        log = data["reflection_log"]
        assert data["status"] == "completed", data["status"]
        assert len(log) == STEPS, len(log)
        runs = plan.with_suffix(".runs")
        starts = [os.stat(runs / f"{k}-1.log").st_mtime_ns / 1e9 for k in range(STEPS)]
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        early = statistics.median(gaps[90:110])
        late = statistics.median(gaps[-110:-90])
        print(f"steps: {STEPS}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
              f"cores; plan file at the end {len(text.encode()) / 1e6:.1f} MB")
        print(f"completed in {elapsed:.1f} s ({elapsed / STEPS * 1000:.1f} ms a step)")
        print(f"step ~100: {early * 1000:.1f} ms   step ~{STEPS - 100}: {late * 1000:.1f} ms   "
              f"ratio {late / early:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()

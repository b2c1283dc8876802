"""Per-plan syscalls: BENCH_PLANS one-step `true` plans through one `daemon --once` under
strace, counted per plan (issue 12, target 1). Counts, unlike times, do not move with the
load of the machine: compare a change's counts with the branch point's.

The daemon runs twice on the same vault: once with every plan to run, once with nothing
left; the second run's counts (start-up, first scan, exit) are taken off the first's and
the rest divided by the plans. The step's own processes (setpriv, `true`) are in the
counts as well. Printed per plan: files created (temp files: open with O_CREAT|O_EXCL;
every open with O_CREAT, which also opens existing lock, usage and events files),
openat2 (a walk from the vault's root), fsync, renames, and the rest of the calls traced.
Needs strace (`apt-get install -y strace`). BENCH_PLANS (100) changes the size;
BENCH_STEPS (1) gives each plan that many steps of `true`, and the counts are then
divided by the steps (what one step costs, the claim and the end spread over them).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_plans import plan_text
from bytecode import compile_package

from modulatio_d.ops.init import init

PLANS = int(os.environ.get("BENCH_PLANS", "100"))
STEPS = int(os.environ.get("BENCH_STEPS", "1"))
TRACED = ("openat,openat2,rename,renameat,renameat2,fsync,fdatasync,unlink,unlinkat,mkdirat,"
          "write,pwrite64,vfork,clone,clone3,wait4,newfstatat,statx,getdents64,flock,close,read,"
          "ftruncate,fchmod,fchown")
_CALL = re.compile(r"(\d+)\s+(\w+)\((.*)")


def traced_run(vault: Path, out: Path) -> None:
    subprocess.run(["strace", "-f", "-o", str(out), "-e", f"trace={TRACED}", sys.executable,
                    "-m", "modulatio_d", "daemon", "--vault", str(vault), "--once",
                    "--log-level", "warning", "--allow-root"],
                   check=True, env=dict(os.environ, MODULATIO_ALLOW_ROOT="1"),
                   stderr=subprocess.DEVNULL)


def count(trace: Path) -> collections.Counter:
    c: collections.Counter = collections.Counter()
    for line in trace.read_text().splitlines():
        m = _CALL.match(line)
        if not m:
            continue
        _, name, rest = m.groups()
        c[name] += 1
        if name in ("openat", "openat2") and "O_CREAT" in rest:
            c["open with O_CREAT"] += 1
            if "O_EXCL" in rest:
                c["temp files (O_CREAT|O_EXCL)"] += 1
    return c


def main() -> None:
    if not shutil.which("strace"):
        sys.exit("strace is not installed (apt-get install -y strace)")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as t:
        tmp = Path(t)
        vault = init(tmp / "v")
        folder = vault.plans_dir("B")
        folder.mkdir(parents=True)
        for n in range(PLANS):
            text = plan_text(n)
            if STEPS > 1:
                text = text.replace('  - {run: "true"}\n', '  - {run: "true"}\n' * STEPS)
            (folder / f"B-P-{n:05d}.md").write_text(text)
        traced_run(vault.root, tmp / "run")
        done = sum("status: completed" in p.read_text() for p in folder.glob("*.md"))
        assert done == PLANS, f"{done} of {PLANS} plans completed"
        traced_run(vault.root, tmp / "idle")
        run, idle = count(tmp / "run"), count(tmp / "idle")
    first = ("temp files (O_CREAT|O_EXCL)", "open with O_CREAT", "openat2", "fsync",
             "fdatasync", "renameat", "renameat2", "mkdirat", "unlinkat")
    per = "a plan" if STEPS == 1 else f"a step ({STEPS} steps a plan)"
    print(f"plans: {PLANS}; syscalls {per} (the run less a run with nothing to do)")
    for name in (*first, *sorted(set(run) - set(first))):
        if run[name] or idle[name]:
            print(f"{name:30s} {(run[name] - idle[name]) / PLANS / STEPS:8.2f}")


if __name__ == "__main__":
    compile_package()  # time the bytecode a user imports (bench/bytecode.py)
    main()

"""Per-plan overhead: PLANS one-step `true` plans through one `daemon --once`, beside nq.

Measured in the same run, in the same temporary folder:
- daemon: `modulatio daemon --once` on a vault of PLANS approved plans, each with
  one step `run: "true"`, from start to exit (every plan completed);
- nq: PLANS jobs `true` queued with nq (`nq -q true` each, then `nq -w`), the
  peer a user compares with (install it: `apt-get install -y nq`; without it the
  line says so and only the floor is printed);
- floor: fork/exec of `true` PLANS times (subprocess, the fast spawn path), plus
  the durable writes a one-step plan needs: the claim, the completion (each a
  fsynced temporary file renamed over the plan, with the folder fsynced) and one
  fsynced usage append to the plan's own `<id>.usage.jsonl` beside it (made by that
  append, as the contract's usage file of a new plan is).
Targets (issue 12): daemon <= 1.5x nq, and <= 3x the floor.
BENCH_PLANS (1000) and BENCH_ROUNDS (3) change the sizes; MODULATIO_PROFILE=FILE
also writes a cProfile of one daemon run to FILE.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bytecode import compile_package
from diskstate import creation_note

from modulatio_d.ops.init import init
from modulatio_d.store import atomic, usage

PLANS = int(os.environ.get("BENCH_PLANS", "1000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CPU: list[tuple[float, float]] = []  # (user, system) s of each daemon run and its steps


def plan_text(n: int) -> str:
    return (f"---\nid: B-P-{n:05d}\ntitle: bench {n}   # a comment\nstatus: approved\n"
            f"sub_objectives:\n  - {{run: \"true\"}}\ncurrent_index: 0\nreflection_log: []\n"
            f"---\nThe body of plan {n}.\n")


def run_daemon(tmp: Path, profile: str | None = None) -> float:
    vault = init(tmp / f"v{len(CPU)}")
    folder = vault.plans_dir("B")
    folder.mkdir(parents=True)
    for n in range(PLANS):
        (folder / f"B-P-{n:05d}.md").write_text(plan_text(n))
    os.sync()
    cmd = [sys.executable]
    if profile:
        cmd += ["-m", "cProfile", "-o", profile]
    cmd += ["-m", "modulatio_d", "daemon", "--vault", str(vault.root), "--once",
            "--log-level", "warning", "--allow-root"]
    t, r = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, env=dict(os.environ, MODULATIO_ALLOW_ROOT="1"))
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append((after.ru_utime - r.ru_utime, after.ru_stime - r.ru_stime))
    done = sum("status: completed" in p.read_text() for p in folder.glob("*.md"))
    assert done == PLANS, f"{done} of {PLANS} plans completed"
    return elapsed  # the vault is removed with the rest at the end (see main)


def install_nq() -> str | None:
    """nq's path; as root with apt-get, Debian's package is installed first when missing
    (the benchmark's set-up; the index updated once if the install fails without it)."""
    if not shutil.which("nq") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for update in (False, True):
            if update:
                subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            done = subprocess.run(["apt-get", "install", "-y", "-qq", "nq"], env=env,
                                  capture_output=True)
            if done.returncode == 0:
                break
    return shutil.which("nq")


def run_nq(tmp: Path) -> float | None:
    nq = install_nq()
    if not nq:
        return None
    qdir = Path(tempfile.mkdtemp(prefix="nq", dir=tmp))
    env = dict(os.environ, NQDIR=str(qdir))
    t = time.perf_counter()
    for _ in range(PLANS):
        subprocess.run([nq, "-q", "true"], env=env, check=True)
    subprocess.run([nq, "-w"], env=env, check=True)
    return time.perf_counter() - t


def floor(tmp: Path) -> float:
    folder = Path(tempfile.mkdtemp(prefix="floor", dir=tmp))
    plans = []
    for n in range(PLANS):
        plans.append(folder / f"{n}.md")
        plans[-1].write_text(plan_text(n))
    os.sync()
    t = time.perf_counter()
    for plan in plans:
        atomic.rewrite(plan, lambda raw: raw.replace(b"approved", b"executing"))
        subprocess.run(["true"], check=True)
        atomic.rewrite(plan, lambda raw: raw.replace(b"executing", b"completed"))
        usage.append(plan.with_suffix(".usage.jsonl"), [{"input_tokens": 0}])
    return time.perf_counter() - t


def main() -> None:
    daemon, peers, floors = [], [], []
    # Nothing is removed until every round has run: on an ext4 without a journal (this
    # machine's) a new inode is found past every inode freed in the last minutes
    # (fs/ext4/ialloc.c, recently_deleted), so a round's clean-up made the next rounds'
    # file creations slower, the daemon's most (docs/benchmarks.md).
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for _ in range(ROUNDS):
            daemon.append(run_daemon(tmp))
            peers.append(run_nq(tmp))
            floors.append(floor(tmp))
        if os.environ.get("MODULATIO_PROFILE"):
            run_daemon(tmp, os.environ["MODULATIO_PROFILE"])
        note = creation_note(t)
    d, f = statistics.median(daemon), statistics.median(floors)
    if note:
        print(note)
    print(f"plans: {PLANS}, rounds: {ROUNDS}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores; medians")
    print(f"daemon --once  {d:7.2f} s  ({d / PLANS * 1000:.1f} ms a plan)  "
          f"runs {', '.join(f'{x:.2f}' for x in daemon)}")
    user, system = (statistics.median(c[i] for c in CPU[:ROUNDS]) for i in (0, 1))
    print(f"  CPU a plan (the daemon, its start-up and its steps; median): user "
          f"{user / PLANS * 1000:.2f} ms, system {system / PLANS * 1000:.2f} ms")
    if peers[0] is None:
        print("nq             not installed (apt-get install -y nq): compared with the floor only")
    else:
        n = statistics.median(peers)  # type: ignore[type-var]
        print(f"nq             {n:7.2f} s  ratio {d / n:.2f}x (target <= 1.5x)")
    print(f"floor          {f:7.2f} s  ratio {d / f:.2f}x (target <= 3x): fork/exec of true "
          f"+ claim, completion and usage writes, durable; runs "
          f"{', '.join(f'{x:.2f}' for x in floors)}; round by round "
          f"{', '.join(f'{x / y:.2f}x' for x, y in zip(daemon, floors, strict=True))}")


if __name__ == "__main__":
    compile_package()  # time the bytecode a user imports (bench/bytecode.py)
    main()

"""Running `modulatio` commands and daemons as real processes with a deadline, a memory
ceiling and their peak memory measured: for tests of files that could hang a process
or make it read gigabytes (issue 9, defects 2 and 3).

Each process gets its own session, RLIMIT_AS (so a reader that slurps /dev/zero dies
of MemoryError instead of eating the machine) and PYTHONFAULTHANDLER: a process
still running at the deadline is sent SIGABRT first, so its stderr shows where it
hung (the Python stack of every thread), then SIGKILL. Peak memory is the child's
own VmHWM, written at its exit by tests/peakhook/sitecustomize.py (ru_maxrss from wait4()
would carry the pytest process's high-water mark through fork and exec); when the
process did not get to exit (killed), the largest VmHWM sampled while it ran.

A process blocked in open() of a FIFO (its wchan is the kernel's wait_for_partner)
for FIFO_STUCK_S is hung for good, since no test ever opens the other end: it is
stopped then rather than at the deadline, so a hang costs seconds, not the timeout.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MEMORY_CEILING = 1024 * 1024 * 1024
"""RLIMIT_AS of each process: far below the machine. Not much lower: address space is not
memory, and a daemon reserves some 64 MiB of malloc arena for each watchdog thread (at
320 MiB it cannot start them)."""
FIFO_STUCK_S = 2.0
MAX_RSS_KIB = 96 * 1024
"""Peak resident memory allowed to any command or daemon on a small vault, whatever file
it holds: here each takes 16-25 MiB, and no file may cost more than a few MiB to refuse."""


@dataclass
class Ran:
    name: str
    argv: list[str]
    code: int | None
    """Exit code (negative: killed by that signal); None when it was still running at the
    deadline (it was then killed)."""
    out: str
    err: str
    maxrss_kib: int
    seconds: float

    def describe(self) -> str:
        state = "HUNG (killed at the deadline)" if self.code is None else f"exit {self.code}"
        return (f"`{self.name}`: {state} after {self.seconds:.1f}s, peak "
                f"{self.maxrss_kib // 1024} MiB\n--- stderr (end) ---\n{self.err[-2500:]}")


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CEILING, MEMORY_CEILING))


def stuck_on_fifo(pid: int) -> bool:
    """Whether process `pid` is blocked opening a FIFO, waiting for the other end."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().strip() == "wait_for_partner"
    except OSError:
        return False


def modulatio(*argv: str) -> list[str]:
    return [sys.executable, "-m", "modulatio_d", *argv]


def run_all(jobs: dict[str, list[str]], folder: Path, timeout: float,
            env: dict[str, str] | None = None) -> dict[str, Ran]:
    """Start every job at once (name -> argv), wait for all up to `timeout` seconds."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODULATIO_")}
    full_env.update(PYTHONFAULTHANDLER="1", MODULATIO_ALLOW_ROOT="1", **(env or {}))
    sampled: dict[str, int] = {}  # name -> the largest VmHWM seen while it ran (KiB)
    hook = str(Path(__file__).resolve().parent.parent / "peakhook")
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (hook, full_env.get("PYTHONPATH"))
                                             if p)
    started = {}
    for n, (name, argv) in enumerate(jobs.items()):
        out, err = folder / f"job{n}.out", folder / f"job{n}.err"
        peak_file = folder / f"job{n}.peak"
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                                    env={**full_env, "MODULATIO_TEST_PEAK_FILE": str(peak_file)},
                                    cwd=folder, start_new_session=True, preexec_fn=_limit)
        started[name] = (proc, out, err, time.monotonic())
        sampled[name] = 0
    done: dict[str, tuple[int | None, int, float]] = {}
    blocked: dict[str, float] = {}  # name -> since when it waits in a FIFO's open()
    deadline = time.monotonic() + timeout
    while len(done) < len(started) and time.monotonic() < deadline:
        for name, (proc, _, _, t0) in started.items():
            if name in done:
                continue
            sampled[name] = max(sampled[name], _vm_hwm(proc.pid))
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                done[name] = (proc.returncode, sampled[name], time.monotonic() - t0)
            elif not stuck_on_fifo(proc.pid):
                blocked.pop(name, None)
            elif time.monotonic() - blocked.setdefault(name, time.monotonic()) > FIFO_STUCK_S:
                _stop(proc)
                done[name] = (None, sampled[name], time.monotonic() - t0)
        time.sleep(0.02)
    for name, (proc, _, _, t0) in started.items():
        if name not in done:
            _stop(proc)
            done[name] = (None, sampled[name], time.monotonic() - t0)
    return {name: Ran(name, proc.args, done[name][0], out.read_text(errors="replace"),
                      err.read_text(errors="replace"),
                      _peak(out.with_suffix(".peak"), done[name][1]), done[name][2])
            for name, (proc, out, err, _) in started.items()}


def _vm_hwm(pid: int) -> int:
    """The peak resident memory of `pid`'s own address space so far, in KiB (0: gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
    except (OSError, StopIteration, ValueError):
        return 0


def _peak(path: Path, sampled: int) -> int:
    """The peak the process wrote at its exit; else the largest one sampled."""
    try:
        return max(int(path.read_text()), sampled)
    except (OSError, ValueError):
        return sampled


def _stop(proc: subprocess.Popen) -> int:
    """SIGABRT (the faulthandler prints where it hangs), then SIGKILL; its ru_maxrss."""
    for sig, grace in ((signal.SIGABRT, 3.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        end = time.monotonic() + grace
        while time.monotonic() < end:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return usage.ru_maxrss
            time.sleep(0.02)
    return 0


def problems(ran: dict[str, Ran], ok_codes: dict[str, tuple[int, ...]] | None = None,
             default: tuple[int, ...] = (0, 1)) -> list[str]:
    """What is wrong with each finished process: hung, killed, exit code not allowed, a
    traceback, a failure without a message, memory over MAX_RSS_KIB."""
    out = []
    for name, r in ran.items():
        allowed = (ok_codes or {}).get(name, default)
        wrong = []
        if r.code is None:
            wrong.append("hung")
        elif r.code not in allowed:
            wrong.append(f"exit {r.code}, not {allowed}")
        if "Traceback (most recent call last)" in r.err:
            wrong.append("a traceback")
        if r.code == 1 and not (r.err.strip() or r.out.strip()):
            wrong.append("failed without saying why")
        if r.maxrss_kib > MAX_RSS_KIB:
            wrong.append(f"peak memory {r.maxrss_kib // 1024} MiB > {MAX_RSS_KIB // 1024} MiB")
        if wrong:
            out.append(f"{', '.join(wrong)}: {r.describe()}")
    return out

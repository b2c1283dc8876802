"""The crash-point matrix machinery: find the daemon's write-side syscalls on the vault
with strace, then re-run the same small run once per chosen call with strace's fault
injection at that call (SIGKILL, EIO or ENOSPC; or ENOENT at a close() of a vault file,
the `close` mode), restart a clean `daemon --once`, and check the invariants.

A point is a call named by what it does, not by when: (syscall, what, k), `what` being
its arguments with the vault's path, descriptors, pids and temp-file suffixes taken
out (`fsync(<V/P/plans/.M-A.md.*.tmp>)`), k its occurrence among the calls that look
the same. strace injects at the N-th call of a syscall (`inject=fsync:...:when=N`,
counted from the start of the process, reads included), so N is looked up in a
reference run of the same vault; a heartbeat written one step later shifts N between
runs, so each faulted run checks, in strace's own log, which call it hit, and runs
again at the corrected N when it missed (twice at most). A point still missed after
that is reported and not judged.

Only calls that touch the vault (a path inside it, or a descriptor open on a file or
folder inside it) and that write are points: openat with O_WRONLY/O_RDWR/O_CREAT/
O_TRUNC/O_APPEND, write, pwrite64, fsync, ftruncate, fchmod, fchown, rename,
renameat2, unlink, mkdir, utimensat, ... Each point has a class by the file it writes:
plan (the plan file, its temp files, its folder's fsync), record (.modulatio/state),
lock, events, heartbeat, usage (<plan>.usage.jsonl), step (<plan>.runs/: the log, the
scratch usage file).

strace runs WITHOUT -f on purpose: its injection counters are per process, so with
-f every step child (a Python process with writes of its own) would be hit at its
own N-th call too, which tests step failures rather than daemon crashes. The daemon
does its vault writes on its main thread (watchdog's observer thread only wakes the
loop through a pipe), so tracing that thread alone sees every point. Steps die with
the daemon (its dead man's switch, daemon/deadman.py), as in a real crash.
PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import difflib
import random
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from torture_helpers import CLI, Checker, TVault, run

# The write side of the file system API; `?` makes strace skip a name this
# architecture lacks (aarch64 has no rename, unlink, mkdir, link, symlink).
WRITE_SIDE = ("openat", "openat2", "open", "creat", "write", "pwrite64", "writev", "fsync", "fdatasync",
              "ftruncate", "truncate", "fchmod", "fchown", "rename", "renameat",
              "renameat2", "unlink", "unlinkat", "mkdir", "mkdirat", "link", "linkat",
              "symlink", "symlinkat", "utimensat")
# ENOSPC only where a file system really returns it (space or an inode is taken).
ENOSPC_CALLS = {"openat", "openat2", "open", "creat", "write", "pwrite64", "writev", "fsync",
                "fdatasync", "ftruncate", "rename", "renameat", "renameat2", "mkdir",
                "mkdirat", "link", "linkat", "symlink", "symlinkat"}
MODES = {"kill": "signal=KILL", "eio": "error=EIO", "enospc": "error=ENOSPC",
         "close": "error=ENOENT"}
# The `close` mode's points: the close() of any descriptor of a vault file, read or
# written, answered ENOENT as GlusterFS's FUSE client answers it for a file another host
# replaced (docs/multi-host.md); the descriptor is gone all the same. The other modes
# leave close() alone.
CLOSE = "close"
CLASSES = ("plan", "record", "lock", "events", "heartbeat", "usage", "step")
# A tick of 2 s: heartbeats inside a step come only after 1 s (the steps take ~0.1 s),
# so runs repeat the same calls; a failed plan write is retried after 1 s.
DAEMON_ARGS = ["--once", "--tick-seconds", "2", "--log-level", "warning"]
RUN_TIMEOUT_S = 60.0
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
_LINE = re.compile(r"^(\w+)\((.*)$")
_FD = re.compile(r"^(\d+)<([^>]*)>")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, order=True)
class Point:
    syscall: str
    what: str  # the call with the vault, fds, pids and temp suffixes taken out
    k: int  # its occurrence among calls of this syscall that look the same
    klass: str

    def __str__(self) -> str:
        return f"{self.what} #{self.k}"


@dataclass(frozen=True)
class Call:
    syscall: str
    what: str
    line: str
    point: Point | None  # set when it is a write-side call on the vault


def strace_problem() -> str | None:
    """Why strace's fault injection cannot be used here, or None when it can."""
    if shutil.which("strace") is None:
        return "strace is not installed (.ci/run installs it from Debian's packages)"
    try:
        done = subprocess.run(["strace", "-o", "/dev/null", "-e", "trace=getpid",
                               "-e", "inject=getpid:error=EPERM:when=1", "true"],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"strace cannot run: {e}"
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        return f"strace cannot trace here (ptrace refused?): exit {done.returncode}: {err}"
    return None


def _in_vault(text: str, root: str) -> bool:
    return text == root or text.startswith(root + "/")


def _normalise(name: str, args: str, root: str) -> str:
    args = args.split(") = ")[0]
    if name in ("write", "pwrite64", "writev", "ftruncate"):
        # The descriptor, not the bytes or the length (they hold times, pids, durations).
        args = args.split(",")[0]
    args = args.replace(root, "V")
    args = re.sub(r"\b\d+<", "<", args)
    # A path opened relative to the vault's own descriptor (openat2 of store/fs/) reads
    # as the path beneath the vault, like the absolute paths of other calls.
    args = re.sub(r'<V>, "', '"V/', args)
    args = re.sub(r"pipe:\[\d+\]|socket:\[\d+\]|anon_inode:[^>]*", "pipe", args)
    args = re.sub(r"\.[a-z0-9_]{8}\.tmp\b", ".*.tmp", args)
    args = re.sub(r"(daemons/\.?)[^/\">]+\.\d+\.json", r"\1HB.json", args)
    # The same names given to *at calls relative to the folder's descriptor (store/fs/).
    args = re.sub(r'(daemons>, "\.?)[^/\">]+\.\d+\.json', r"\1HB.json", args)
    args = re.sub(r"\b\d{4}-\d\d-\d\dT[\d:]+Z?", "T", args)
    return f"{name}({args})"


def _klass(what: str) -> str:
    if "V/.modulatio/state" in what:
        return "record"
    if "V/.modulatio/daemons" in what:
        return "heartbeat"
    if "V/.modulatio" in what:
        return "events"
    if ".runs" in what:
        return "step"
    if ".usage.jsonl" in what:
        return "usage"
    if ".lock" in what:
        return "lock"
    return "plan"


def parse_calls(trace: str, root: Path) -> tuple[dict[str, list[Call]], str]:
    """Every call of a strace log (one process, -y) by syscall, in order, each write-side
    call on the vault with its Point; and the call the run was hit at ("" if none)."""
    r = str(root)
    calls: dict[str, list[Call]] = {}
    seen: dict[tuple[str, str], int] = {}
    hit, previous = "", ""
    for line in trace.splitlines():
        if line.startswith("+++ killed by SIGKILL"):
            hit = hit or previous
        m = _LINE.match(line)
        if not m:
            continue  # signals (---), exit (+++)
        previous = line
        if line.endswith("(INJECTED)"):
            hit = hit or line
        name, rest = m.groups()
        what = _normalise(name, rest, r)
        k = seen.get((name, what), 0)
        seen[(name, what)] = k + 1
        fd = _FD.match(rest)
        touches = bool(fd and _in_vault(fd.group(2), r)) or any(
            _in_vault(p, r) for p in _QUOTED.findall(rest.split(") = ")[0]))
        opens = ("openat", "openat2", "open")
        write_side = touches and not (
            name in opens and not any(f in rest for f in _WRITE_FLAGS)) and \
            not (name in ("write", "pwrite64", "writev") and not fd)
        point = Point(name, what, k, _klass(what)) if write_side else None
        calls.setdefault(name, []).append(Call(name, what, line[:200], point))
    return calls, hit


@dataclass
class Reference:
    """The calls of an unfaulted run: where each point is, by syscall."""

    calls: dict[str, list[Call]]

    def points(self) -> list[Point]:
        return [c.point for cs in self.calls.values() for c in cs if c.point]

    def position(self, p: Point) -> int:
        """N (1-based) of the point in the reference run."""
        for i, c in enumerate(self.calls[p.syscall]):
            if c.point == p:
                return i + 1
        raise KeyError(p)


def warm_and_count(template: TVault, work: Path, env: dict[str, str]) -> tuple[Reference, str]:
    """Run the daemon once to warm caches (Python writes its .pyc files on a first run,
    which would shift every later count), then once under strace: the reference, and
    that run's problems ("" when it completed as it should)."""
    warm = template.copy_to(work / "warm")
    run([*CLI, "daemon", "--vault", str(warm.root), *DAEMON_ARGS], env, RUN_TIMEOUT_S)
    tv = template.copy_to(work / "count")
    log = work / "count.strace"
    argv = ["strace", "-o", str(log), "-y", "-e",
            "trace=" + ",".join("?" + s for s in (*WRITE_SIDE, CLOSE)), *CLI, "daemon", "--vault",
            str(tv.root), *DAEMON_ARGS]
    done = run(argv, env, RUN_TIMEOUT_S)
    problems = Checker(tv).violations()
    if done.code != 0:
        problems.insert(0, f"the counting run: {done.describe()}")
    calls, _ = parse_calls(log.read_text(errors="replace"), tv.root)
    return Reference(calls), "\n".join(problems)


def sample(points: list[Point], klass: str, budget: int | None, seed: int, mode: str,
           first: tuple[str, ...] = ()) -> list[Point]:
    """A deterministic sample of `budget` points of one class (all when None): first
    the points whose `what` contains one of `first` (the issue's own reproducers),
    then drawn round-robin over the syscalls from a seeded shuffle of each one's."""
    pool = [p for p in points if p.klass == klass and (p.syscall == CLOSE) == (mode == CLOSE)
            and (mode != "enospc" or p.syscall in ENOSPC_CALLS)]
    if budget is None or budget >= len(pool):
        return sorted(pool)
    chosen = []
    for needle in first:
        match = next((p for p in pool if needle in p.what and p not in chosen), None)
        if match:
            chosen.append(match)
    rng = random.Random(f"{seed}-{mode}-{klass}")
    by_call: dict[str, list[Point]] = {}
    for p in pool:
        if p not in chosen:
            by_call.setdefault(p.syscall, []).append(p)
    queues = []
    for name in sorted(by_call):
        q = sorted(by_call[name])
        rng.shuffle(q)
        queues.append(q)
    while len(chosen) < budget and any(queues):
        for q in queues:
            if q and len(chosen) < budget:
                chosen.append(q.pop())
    return chosen


@dataclass
class Result:
    point: Point
    mode: str
    hit: str  # the call strace reports it hit ("" when the run never reached it)
    on_target: bool
    runs: int
    violations: list[str]
    seconds: float

    def describe(self) -> str:
        where = f"hit {self.hit}" if self.hit else "never reached"
        return (f"{self.mode} at {self.point} ({where}, after {self.runs} run(s)):\n"
                + "\n".join(f"    - {v}" for v in self.violations))


def _retarget(ref: Reference, calls: list[Call], p: Point, n: int) -> int | None:
    """Where the point is in this run, or a better guess than `n`; None: no better one."""
    seen = [i for i, c in enumerate(calls) if c.what == p.what]
    if len(seen) > p.k:
        return seen[p.k] + 1 if seen[p.k] + 1 != n else None
    if seen:  # not reached: as far past this run's last such call as in the reference (a
        # heartbeat is written by the clock: the calls between two of them vary, under load
        # most, so the whole run's shift can point the wrong way; the last one seen does not)
        there = [i for i, c in enumerate(ref.calls[p.syscall]) if c.what == p.what]
        guess = seen[-1] + there[p.k] - there[len(seen) - 1] + 1
        if guess > n:
            return guess
    # Not reached before the hit: shift by how far this run ran ahead of the reference.
    r = [c.what for c in ref.calls[p.syscall][:n]]
    f = [c.what for c in calls]
    blocks = [b for b in difflib.SequenceMatcher(None, r, f, autojunk=False)
              .get_matching_blocks() if b.size]
    if not blocks:
        return None
    shift = blocks[-1].b - blocks[-1].a
    return n + shift if shift > 0 else None


def run_point(template: TVault, ref: Reference, work: Path, env: dict[str, str], mode: str,
              point: Point) -> Result:
    """One cell of the matrix: the faulted run (at the corrected N), a clean
    `daemon --once`, the checks."""
    t0 = time.monotonic()
    n = ref.position(point)
    for attempt in range(3):
        if work.exists():
            shutil.rmtree(work)
        tv = template.copy_to(work)
        log = work / "fault.strace"
        inject = f"{point.syscall}:{MODES[mode]}:when={n}"
        argv = ["strace", "-o", str(log), "-y", "-e", f"trace={point.syscall}",
                "-e", f"inject={inject}", *CLI, "daemon", "--vault", str(tv.root),
                *DAEMON_ARGS]
        faulted = run(argv, env, RUN_TIMEOUT_S)
        calls, hit = parse_calls(log.read_text(errors="replace") if log.exists() else "",
                                 tv.root)
        mine = calls.get(point.syscall, [])
        on_target = len(mine) >= n and mine[n - 1].point == point
        if on_target or attempt == 2:
            break
        better = _retarget(ref, mine, point, n)
        if better is None:
            break
        n = better
    problems = []
    if faulted.hung:
        problems.append(f"the faulted daemon hung: {faulted.describe()}")
    elif mode == "kill":
        if hit and faulted.code not in (-9, 137):
            problems.append(f"the daemon was to be killed: {faulted.describe()}")
        elif not hit and faulted.code != 0:
            problems.append(f"the daemon failed: {faulted.describe()}")
    elif faulted.code != 0 or "Traceback" in faulted.err:
        # An I/O error must cost a retry or a plan let go, never the daemon.
        problems.append(f"the daemon did not survive the injected error: "
                        f"{faulted.describe()}")
    clean = run([*CLI, "daemon", "--vault", str(tv.root), *DAEMON_ARGS], env, RUN_TIMEOUT_S)
    if clean.code != 0 or "Traceback" in clean.err:
        problems.append(f"the clean daemon --once after it: {clean.describe()}")
    kills = 1 if mode == "kill" and hit else 0
    problems += Checker(tv, kills).violations()
    if not problems:
        shutil.rmtree(work, ignore_errors=True)  # keep only what failed, for a look
    return Result(point, mode, hit[:200], on_target, attempt + 1, problems,
                  time.monotonic() - t0)


def run_matrix(template: TVault, ref: Reference, base: Path, env: dict[str, str], mode: str,
               points: list[Point], workers: int = 2) -> list[Result]:
    def one(item: tuple[int, Point]) -> Result:
        i, p = item
        return run_point(template, ref, base / f"{mode}-{p.klass}-{i:02d}", env, mode, p)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, enumerate(points)))

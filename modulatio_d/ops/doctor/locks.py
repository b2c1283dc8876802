"""The lock checks of `modulatio doctor`, with two real processes: this one and a child
(`python -c`) that takes the lock, says "held", and holds it until its stdin closes. The
lock must refuse this process while the child holds it, and be free soon after it ends.
try_lock and take_within are also what `--peer` probes the other host's locks with.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from modulatio_d.core.filesystems import Tier, Verdict
from modulatio_d.ops.doctor.probe import Probe, no_folder
from modulatio_d.ops.doctor.report import Row
from modulatio_d.store import fs


def check_locks(probe: Probe) -> list[Row]:
    if probe.folder is None:
        return no_folder("flock", probe) + no_folder("posix locks", probe)
    return [_exclusion(probe, "flock"), _exclusion(probe, "posix")]


_HOLDER = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
try:
    if sys.argv[2] == "flock":
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError as e:
    print("error", e.strerror, flush=True)
    sys.exit(1)
print("held", flush=True)
sys.stdin.read()
"""


def try_lock(fd: int, kind: str) -> bool:
    """Take the lock without waiting: True taken, False held elsewhere; other errors raise."""
    try:
        if kind == "flock":
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def _unlock(fd: int, kind: str) -> None:
    if kind == "flock":
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)


def take_within(path: Path, kind: str, seconds: float) -> float | None:
    """Seconds until the lock on `path` could be taken (then dropped), None if not in time."""
    fd = fs.open_regular(path, os.O_RDWR)
    try:
        start = time.monotonic()
        while not try_lock(fd, kind):
            if time.monotonic() - start > seconds:
                return None
            time.sleep(0.002)
        _unlock(fd, kind)
        return time.monotonic() - start
    finally:
        fs.close(fd)


def _exclusion(probe: Probe, kind: str) -> Row:
    name = "flock" if kind == "flock" else "posix locks"
    what = "flock" if kind == "flock" else "a POSIX lock (lockf)"
    path = probe.own(kind)
    child = subprocess.Popen([sys.executable, "-I", "-S", "-c", _HOLDER, str(path), kind],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        ready, _, _ = select.select([child.stdout], [], [], 10.0)
        said = child.stdout.readline().strip() if ready else "no answer in 10 s"
        if said != "held":
            return Row(name, Verdict.UNSAFE,
                       f"{what} on {path} cannot be taken: {said.removeprefix('error ')}",
                       "the daemons cannot claim plans here; use another filesystem")
        try:
            blocked = take_within(path, kind, 0) is None
        except OSError as e:
            return Row(name, Verdict.UNSAFE, f"{what} fails in a second process: {e.strerror}",
                       "the daemons cannot claim plans here; use another filesystem")
        if not blocked:
            unsafe = kind == "flock"
            return Row(name, Verdict.UNSAFE if unsafe else Verdict.CAVEAT,
                       f"{what} held by one process did not stop a second one: it does not "
                       "exclude on this filesystem" + ("" if unsafe else "; the daemons use "
                                                       "flock, but a step that uses lockf is "
                                                       "not protected"),
                       "use another filesystem" if unsafe else "")
        child.stdin.close()
        child.wait(10)
        took = take_within(path, kind, 5.0)
        if took is None:
            return Row(name, Verdict.CAVEAT, f"{what} excludes, but was not free 5 s after "
                       "its holder ended", "a plan would wait that long after a daemon died")
        scope = ("between two processes of this host" if probe.fs is None
                 or probe.fs.tier is Tier.LOCAL else
                 "between two processes of this host (across hosts: `--peer`)")
        return Row(name, Verdict.OK, f"{what} excludes {scope}; free again "
                   f"{took * 1000:.0f} ms after its holder ended",
                   data={"takeover_ms": round(took * 1000, 1)})
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        for pipe in (child.stdin, child.stdout, child.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()

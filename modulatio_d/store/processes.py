"""Whether a process of this host still runs, and what /proc says about one.

Used for heartbeats (a heartbeat whose daemon is gone is stale), by a claimer
that finds a plan claimed by a live daemon of this host (daemon/claim.py), and by
`modulatio stop` and `ps` (ops/stopping.py, ops/detach.py). A pid is only meaningful on the host
that wrote it; callers check the host first. A zombie (exited, not yet reaped
by its parent) counts as gone: it runs nothing any more. A pid we may not
signal (another user's process) counts as running: it exists.
"""

from __future__ import annotations

import os
import subprocess

# Linux never hands out a pid above 2**22 (PID_MAX_LIMIT on 64-bit kernels): a larger
# number, zero or a negative one in a file is no process at all. Zero and -1 must never
# reach kill(2): they mean the caller's process group and every process it may signal.
PID_MAX = 1 << 22


def as_pid(value: object) -> int | None:
    """`value` as a pid one could signal (an int in 1..PID_MAX, not a bool); else None.
    Every pid read from a file (heartbeats, claims, the pid file) passes through here."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= PID_MAX:
        return None
    return value


def gone(pid: int) -> bool:
    """True when `pid` no longer runs on this host (a number that is no pid never ran)."""
    if as_pid(pid) is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The state follows the command name, which is in parentheses.
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def is_modulatio_daemon(pid: int) -> bool:
    """Whether `pid` runs `modulatio daemon` (so a reused pid is never taken for one)."""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:  # gone, or hidden from us (hidepid)
            return False
    else:  # no /proc (macOS, the BSDs): ask ps
        try:
            out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                                 timeout=5, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
        argv = out.split()
    joined = b" ".join(argv)
    return b"modulatio" in joined and b"daemon" in argv


def start_time(pid: int) -> float | None:
    """When `pid` started, in Unix seconds (to about a second: the boot time in
    /proc/stat is whole seconds); None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def argv(pid: int) -> list[str] | None:
    """The command line of `pid` (None when gone or hidden from us)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [os.fsdecode(a) for a in raw.split(b"\0")[:-1]] if raw else None


def cwd(pid: int) -> str | None:
    """The working folder of `pid` (readable for our own processes, or as root)."""
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def environ(pid: int) -> dict[str, str] | None:
    """The environment `pid` started with (readable for our own processes, or as root)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    pairs = (os.fsdecode(item).partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs}

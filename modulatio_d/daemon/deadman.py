"""A step's process dies with the daemon that started it: the dead man's switch.

1. At its first step a daemon starts one small `sh` (`SCRIPT`, in a process group
   of its own, deaf to HUP, INT, QUIT and TERM) whose stdin is a pipe only the
   daemon holds the write end of (close-on-exec, never passed to a step).
2. Each time a child starts or is about to be reaped, the daemon writes the pids of
   the children it has running, one line (`arm`, `disarm`); the switch keeps the
   last line it read.
3. When the daemon exits, however it exits (SIGKILL too), the kernel closes the
   pipe; the switch reads its end and sends SIGKILL to the pids of the last line,
   then exits.

That is what PR_SET_PDEATHSIG (SIGKILL) gives, a signal to the daemon's direct child
when the daemon dies, without its price on every step: a `preexec_fn` makes CPython
fork instead of vfork and run Python in the child (about 5 ms a step in a busy
daemon), and util-linux's `setpriv --pdeathsig` as an exec prefix costs an exec of
its own (1.1 ms of CPU a step here, docs/benchmarks.md). What it started in the
background lives on, as with PDEATHSIG; it holds the plan's lock descriptor, so no
other daemon starts the plan beside it (child.py).

Its windows, and why they are safe:
- A pid is armed once the spawn has returned: a daemon killed during the exec of its
  child leaves that child running, as PDEATHSIG did in setpriv's own exec. The lock
  descriptor the child holds is still the guarantee that matters.
- A pid is disarmed before the daemon reaps it (child.py waits without reaping
  first): until it is reaped a pid cannot name another process, so the switch never
  kills a stranger that was given a freed pid.
- A switch that died or stopped reading (a full pipe) is killed and replaced on the
  next write, and told the pids again.

The hook process and its deliveries keep PR_SET_PDEATHSIG (`die_with_parent`,
setpriv): one start per daemon, and deliveries are rare and run from threads.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from subprocess import DEVNULL, Popen  # bound here: tests that stand in for a step's Popen

log = logging.getLogger("modulatio.daemon")

SCRIPT = ("trap '' HUP INT QUIT TERM\n"
          "live=\n"
          "while IFS= read -r line; do live=$line; done\n"
          "[ -z \"$live\" ] || kill -KILL $live 2>/dev/null\n")


class Switch:
    """One per daemon process, started when first armed."""

    def __init__(self) -> None:
        self.live: set[int] = set()
        self._proc: Popen | None = None
        self._fd = -1

    @property
    def pid(self) -> int | None:
        """The switch's own pid (None before the first arm)."""
        return None if self._proc is None else self._proc.pid

    def arm(self, pid: int) -> None:
        self.live.add(pid)
        self._tell()

    def disarm(self, pid: int) -> None:
        if pid in self.live:
            self.live.discard(pid)
            self._tell()

    def _tell(self) -> None:
        line = (" ".join(map(str, sorted(self.live))) + "\n").encode()
        for _ in range(2):
            if self._proc is None:
                self._start()
            try:
                os.write(self._fd, line)
                return
            except (BrokenPipeError, BlockingIOError) as e:
                log.warning("the dead man's switch (pid %d) %s: starting another", self.pid,
                            "ended" if isinstance(e, BrokenPipeError) else "stopped reading")
                self._replace()
        raise OSError("the dead man's switch cannot be started")

    def _start(self) -> None:
        read, write = os.pipe()  # both close-on-exec; the switch gets `read` as stdin
        try:
            self._proc = Popen(["/bin/sh", "-c", SCRIPT, "modulatio-deadman"], stdin=read,
                               stdout=DEVNULL, stderr=DEVNULL, process_group=0, cwd="/",
                               env={"PATH": os.defpath})  # holds no folder, needs no env
        except BaseException:
            os.close(write)
            raise
        finally:
            os.close(read)
        os.set_blocking(write, False)  # a switch that stops reading never blocks the daemon
        self._fd = write

    def _replace(self) -> None:
        proc, self._proc = self._proc, None
        os.close(self._fd)
        self._fd = -1
        if proc is not None:
            proc.kill()  # a stopped one must not wake later and kill what it last read
            proc.wait()

    def forget(self) -> None:
        """In a forked child: the parent's switch is the parent's (its pipe closed here,
        or the parent's death would go unseen while this process lives)."""
        if self._fd >= 0:
            os.close(self._fd)
        self._proc, self._fd, self.live = None, -1, set()


SWITCH = Switch()
os.register_at_fork(after_in_child=SWITCH.forget)


_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the child outlives a killed daemon
    _prctl = None


def die_with_parent(parent: int) -> None:
    """A preexec_fn: PR_SET_PDEATHSIG (SIGKILL), for the hook process (see the module doc).

    Runs in the child between fork and exec, touching no lock of another thread."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)

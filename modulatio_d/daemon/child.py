"""A step's child process: its own process group, dies with the daemon.

The child is started in a new process group (so a timeout or an abort kills
its whole tree with one killpg), with PR_SET_PDEATHSIG so the kernel kills it
when the daemon dies, and with the plan's lock descriptor passed on: if the
daemon dies mid-step, the plan stays locked until the child's tree has exited,
so no other daemon starts the same step beside it. Output goes to a log file,
opened through store/fs/ (never through a link) and handed to the child as
its stdout and stderr.

`wait_fd()` is a pidfd: readable when the child exits, so the daemon's loop
can wait on the child, its wake-up pipe and signals at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the child outlives a killed daemon
    _prctl = None


def _die_with_parent(parent: int) -> None:
    # Runs in the child between fork and exec. The daemon has one other thread (the
    # file watcher, blocked in inotify): this touches none of its locks, only the
    # GIL, which subprocess re-creates in the child. So preexec_fn is safe here.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the daemon died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Launch:
    """What an executor asks to run."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


class Child:
    def __init__(self, launch: Launch, log_path: Path | None,
                 stdio: tuple[IO[bytes] | int, IO[bytes] | int, IO[bytes] | int],
                 keep_fds: tuple[int, ...] = (), monotonic: Callable[[], float] = time.monotonic):
        """`stdio`: the child's stdin, stdout and stderr (files, descriptors or subprocess
        constants), opened by the caller: a step's log by attempt.py (so the vault's part
        of starting a step is told apart from the step's), a reflector's files by
        reflect.py (files, not pipes: nothing to drain). `log_path` names the log for
        what reads it back."""
        self.log_path = log_path
        self.monotonic = monotonic
        parent = os.getpid()
        self.proc = subprocess.Popen(
            launch.argv, cwd=launch.cwd, env=launch.env, stdin=stdio[0],
            stdout=stdio[1], stderr=stdio[2], process_group=0,
            pass_fds=keep_fds, preexec_fn=lambda: _die_with_parent(parent))
        self.pid = self.proc.pid
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def wait_fd(self) -> int | None:
        return self._pidfd

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace: float, hurry: Callable[[], bool] = lambda: False) -> int:
        """TERM the process group, KILL it after `grace` s (or once `hurry()`); the exit status."""
        self.kill_group(signal.SIGTERM)
        deadline = self.monotonic() + grace
        while self.proc.poll() is None and self.monotonic() < deadline and not hurry():
            try:
                self.proc.wait(timeout=min(0.05, max(0.0, deadline - self.monotonic())))
            except subprocess.TimeoutExpired:
                pass
        self.kill_group(signal.SIGKILL)  # also whatever the child left in its group
        return self.proc.wait()

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def describe_status(code: int) -> str:
    """'exit 3' or 'signal 9 (SIGKILL)' from a Popen returncode."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "?"
        return f"signal {-code} ({name})"
    return f"exit {code}"

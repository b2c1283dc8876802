"""A step's child process: its own process group, dies with the daemon.

The child is started in a new process group (so a timeout or an abort kills
its whole tree with one killpg), armed on the daemon's dead man's switch
(deadman.py: SIGKILL when the daemon dies, as PR_SET_PDEATHSIG would), and with
the plan's lock descriptor passed on: if the daemon dies mid-step, the plan stays
locked until the child's tree has exited, so no other daemon starts the same step
beside it. Output goes to a log file, opened through store/fs/ (never through a
link) and handed to the child as its stdout and stderr.

The spawn takes CPython's vfork path (no preexec_fn), about as cheap as a spawn
gets. The child is waited for without being reaped first (waitid WNOWAIT) and
disarmed, then reaped: its pid names it until then, so the switch never holds a
freed pid.

`wait_fd()` is a pidfd: readable when the child exits, so the daemon's loop
can wait on the child, its wake-up pipe and signals at once.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from modulatio_d.daemon.deadman import SWITCH


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
        self.proc = subprocess.Popen(
            launch.argv, cwd=launch.cwd, env=launch.env, stdin=stdio[0], stdout=stdio[1],
            stderr=stdio[2], process_group=0, pass_fds=keep_fds)
        self.pid = self.proc.pid
        try:
            SWITCH.arm(self.pid)
        except BaseException:
            self.kill_group(signal.SIGKILL)  # no step runs without the switch
            self.proc.wait()
            raise
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def wait_fd(self) -> int | None:
        return self._pidfd

    def poll(self) -> int | None:
        return self._reap() if self._exited(0) else None

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; subprocess.TimeoutExpired after `timeout` s."""
        if not self._exited(timeout):
            raise subprocess.TimeoutExpired(self.proc.args, timeout or 0)
        return self._reap()

    def _exited(self, timeout: float | None) -> bool:
        """Whether the child has exited, waiting up to `timeout` s (None: for ever),
        without reaping it."""
        if self.proc.returncode is not None:
            return True
        deadline = None if timeout is None else self.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - self.monotonic())
            flags = os.WEXITED | os.WNOWAIT | (os.WNOHANG if left is not None else 0)
            if os.waitid(os.P_PID, self.pid, flags) is not None:
                return True
            if left is not None and left <= 0:
                return False
            if self._pidfd is not None:
                select.select([self._pidfd], [], [], left)
            else:
                time.sleep(min(left, 0.01))

    def _reap(self) -> int:
        SWITCH.disarm(self.pid)  # while the pid is still this child's
        return self.proc.wait()

    def kill_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace: float, hurry: Callable[[], bool] = lambda: False) -> int:
        """TERM the process group, KILL it after `grace` s (or once `hurry()`); the exit status."""
        self.kill_group(signal.SIGTERM)
        deadline = self.monotonic() + grace
        while self.monotonic() < deadline and not hurry():
            if self._exited(min(0.05, max(0.0, deadline - self.monotonic()))):
                break
        self.kill_group(signal.SIGKILL)  # also whatever the child left in its group
        return self.wait()

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

"""A pool's worker, forked from its supervisor instead of started anew.

A new interpreter that imports the daemon costs about 0.15-0.2 s of CPU before
its first scan (docs/benchmarks.md, "Sixth pass"); a fork of a supervisor that
has imported it already costs a few milliseconds, and the workers share the
imported code's pages. The supervisor is single-threaded (its Waker is a
self-pipe, it runs no watcher), so a fork of it is safe.

The child is made to look like the process `python -P -m modulatio_d daemon
--vault V ARGS` would be, then runs that command's own code (`run`, passed
down by the CLI: the worker's checks, logging and signals are the daemon's):
stdin /dev/null, no descriptor of the supervisor's but stdout and stderr, the
environment given, the vault as working folder, a process group of its own,
default signal dispositions and no wakeup fd, the vault's folders opened anew
(store/fs/opening.py's Roots forget the numbers closed), sys.path as `-P`
leaves it (docs/security.md), death with the supervisor (PR_SET_PDEATHSIG
SIGTERM, and the race with a supervisor that died before that is closed).
The objects alive at the fork are frozen out of the child's garbage
collector (gc.freeze): a supervisor's object collected in the child could
close a descriptor number the worker has since reused.

What differs from a new interpreter: /proc/<pid>/cmdline and environ show the
supervisor's (`ps` and `stop` tell workers by the pool's state file, not by
their command line), and a worker runs the code the supervisor imported, so
an upgrade takes effect when the pool is restarted, not at a worker's restart.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from modulatio_d.store.fs import opening

_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2, signal.SIGHUP, signal.SIGCHLD)


Run = Callable[[list[str], dict[str, str], Path], int]
"""Runs the command `modulatio ARGV` in this process with that environment and working
folder, and returns its exit code (cli/daemon.py's `run_here`)."""


def preload() -> None:
    """Import what a worker runs, once, in the supervisor (before any fork; the CLI that
    started the supervisor is loaded already)."""
    import modulatio_d.daemon.loop  # noqa: F401


class Forked:
    """A forked worker: the part of subprocess.Popen the supervisor uses."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once it ended (minus the signal's number when killed), reaped."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Only while not reaped: the pid is ours until then, never another process's."""
        if self.returncode is None:
            os.kill(self.pid, sig)


def fork(run: Run, argv: list[str], env: dict[str, str], cwd: Path) -> Forked:
    """Fork a worker that runs `modulatio ARGV` with `env` in `cwd` through `run`, and
    dies with this process. Raises OSError (EAGAIN, ENOMEM) when no process can be made."""
    parent = os.getpid()
    _flush()  # or the child would write the supervisor's buffered text again
    gc.freeze()
    try:
        pid = os.fork()
    except BaseException:
        gc.unfreeze()
        raise
    if pid == 0:
        _child(run, argv, env, cwd, parent)  # never returns
    gc.unfreeze()
    return Forked(pid)


def _child(run: Run, argv: list[str], env: dict[str, str], cwd: Path, parent: int) -> None:
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        os.setpgid(0, 0)
        _die_with(parent)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # null among them
        opening.forget_descriptors()  # the vault roots' numbers just closed
        os.chdir(cwd)
        if not sys.flags.safe_path and sys.path:
            # What `python -P` keeps off sys.path: the script's folder, or a `-m` run's
            # working folder, where a file named like a module would replace it.
            del sys.path[0]
        os.environ.clear()
        os.environ.update(env)
        code = run(argv, dict(env), cwd)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 (said on stderr, then this process ends)
        traceback.print_exc()
    finally:
        _flush()
        os._exit(code)


def _die_with(parent: int) -> None:
    """SIGTERM when `parent` dies; at once if it died before this was set."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed, or None
            pass

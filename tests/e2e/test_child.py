"""A step's child process, stopped: TERM, then KILL once the grace has passed on the
injected clock (an hour of grace here, which a fake clock spends at once)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from waiting import wait_for

from modulatio_d.daemon.child import Child, Launch

pytestmark = pytest.mark.timeout(30)

STUBBORN = ("import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)\n")


class Ticking:
    """A monotonic clock that moves 10 minutes each time it is read."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 600.0
        return self.now


def start(tmp_path, clock) -> Child:
    launch = Launch([sys.executable, "-c", STUBBORN], {"PATH": "/usr/bin:/bin"}, tmp_path)
    log_path = tmp_path / "runs" / "0-1.log"
    log_path.parent.mkdir()
    with open(log_path, "ab") as log:
        child = Child(launch, log_path, (subprocess.DEVNULL, log, subprocess.STDOUT),
                      monotonic=clock)
    wait_for(lambda: "ready" in (tmp_path / "runs" / "0-1.log").read_text(), 10, "child ready")
    return child


def test_a_child_that_ignores_term_is_killed_after_the_grace_on_the_injected_clock(tmp_path):
    clock = Ticking()
    child = start(tmp_path, clock)
    try:
        assert child.stop(3600.0) == -signal.SIGKILL
        assert clock.now > 3600.0
    finally:
        child.close()


def test_a_second_signal_kills_at_once_whatever_the_clock(tmp_path):
    child = start(tmp_path, lambda: 0.0)  # time stands still: only hurry() ends the grace
    try:
        assert child.stop(3600.0, hurry=lambda: True) == -signal.SIGKILL
    finally:
        child.close()

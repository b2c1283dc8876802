"""The dead man's switch (daemon/deadman.py), with real processes: a stand-in daemon
arms and disarms real children and is SIGKILLed; the switch is killed, stopped, and
left behind by a fork."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import pid_gone
from waiting import wait_for

pytestmark = pytest.mark.timeout(60)

# A stand-in daemon: one command a line on stdin, one answer a line on stdout.
OWNER = r"""
import os, subprocess, sys, time
from modulatio_d.daemon.deadman import SWITCH
kids = []
for line in sys.stdin:
    cmd, *arg = line.split()
    if cmd == "spawn":  # a child armed as a step is
        p = subprocess.Popen(["sleep", "300"], process_group=0)
        kids.append(p)
        SWITCH.arm(p.pid)
        print(p.pid, flush=True)
    elif cmd == "disarm":
        SWITCH.disarm(int(arg[0]))
        print("ok", flush=True)
    elif cmd == "switch":
        print(SWITCH.pid, flush=True)
    elif cmd == "churn":  # tell the switch until it is replaced (it stopped reading)
        first = SWITCH.pid
        while SWITCH.pid == first:
            SWITCH.arm(1 << 22)
            SWITCH.disarm(1 << 22)
        print(SWITCH.pid, flush=True)
    elif cmd == "fork":  # a forked process that outlives this one
        pid = os.fork()
        if pid == 0:
            time.sleep(300)
            os._exit(0)
        print(pid, flush=True)
"""


class Owner:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", OWNER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.pids: list[int] = []  # every process it started, killed at the end

    def ask(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def spawn(self) -> int:
        pid = int(self.ask("spawn"))
        self.pids.append(pid)
        return pid

    def switch(self) -> int:
        pid = int(self.ask("switch"))
        self.pids.append(pid)
        return pid

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def owner():
    o = Owner()
    yield o
    o.cleanup()


def test_an_armed_child_dies_with_its_owner_and_the_switch_ends(owner):
    kids = [owner.spawn(), owner.spawn()]
    switch = owner.switch()
    owner.kill()
    wait_for(lambda: all(pid_gone(p) for p in kids), 10, "the armed children killed")
    wait_for(lambda: pid_gone(switch), 10, "the switch gone")


def test_a_disarmed_child_is_left_alone(owner):
    kept, armed = owner.spawn(), owner.spawn()
    assert owner.ask(f"disarm {kept}") == "ok"
    switch = owner.switch()
    owner.kill()
    wait_for(lambda: pid_gone(armed) and pid_gone(switch), 10, "the switch done")
    assert not pid_gone(kept)


def test_a_switch_that_died_is_replaced_and_told_every_pid_again(owner):
    first = owner.spawn()
    old = owner.switch()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: pid_gone(old), 10, "the first switch gone")
    second = owner.spawn()  # the write finds the pipe broken: a new switch
    assert owner.switch() != old
    owner.kill()
    wait_for(lambda: pid_gone(first) and pid_gone(second), 10, "both children killed")


def test_a_switch_that_stopped_reading_is_killed_and_replaced(owner):
    child = owner.spawn()
    old = owner.switch()
    os.kill(old, signal.SIGSTOP)  # its pipe fills: the owner must never block on it
    new = int(owner.ask("churn"))
    owner.pids.append(new)
    assert new != old
    wait_for(lambda: pid_gone(old), 10, "the stopped switch killed")
    owner.kill()
    wait_for(lambda: pid_gone(child), 10, "the child killed through the new switch")


def test_a_forked_process_does_not_keep_the_owners_switch_open(owner):
    child = owner.spawn()
    owner.pids.append(int(owner.ask("fork")))
    owner.kill()
    wait_for(lambda: pid_gone(child), 10, "the child killed while the fork lives")


def test_signals_meant_for_a_terminal_or_a_stop_do_not_end_the_switch(owner):
    child = owner.spawn()
    switch = owner.switch()
    sigs = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)

    def ignoring() -> bool:  # once sh has run the script's first line, its trap
        with open(f"/proc/{switch}/status") as f:
            ignored = int(next(x for x in f if x.startswith("SigIgn:")).split()[1], 16)
        return all(ignored >> (s - 1) & 1 for s in sigs)

    wait_for(ignoring, 10, "the switch ignoring HUP, INT, QUIT and TERM")
    for sig in sigs:
        os.kill(switch, sig)
    owner.kill()  # had a signal ended the switch, nothing would kill the child
    wait_for(lambda: pid_gone(child), 10, "the child killed")

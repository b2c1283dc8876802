"""Daemons killed and stopped mid-step: SIGKILL (repeatedly), a grandchild that
keeps the plan's lock, `rerun_after_crash: false`, SIGTERM/SIGINT and a second
signal."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest
from helpers import (
    events,
    group_members,
    marks,
    pid_gone,
    plan,
    starts,
    wait_started,
    wait_ticket,
    wait_ticks,
    write_plan,
)
from waiting import wait_for

from modulatio_d.store.lock import is_held, lock_path

pytestmark = pytest.mark.timeout(60)
PID = "P-P-001"


class ParsePoller:
    """Reads the plan file over and over in a thread; any failure to parse is kept."""

    def __init__(self, dv):
        self.dv, self.reads, self.errors = dv, 0, []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(0.003):
            try:
                plan(self.dv, PID)
                self.reads += 1
            except Exception as e:  # noqa: BLE001 - every kind of failure is the finding
                self.errors.append(repr(e))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def test_sigkill_mid_step_repeatedly(dvault, daemons):
    kills = [2, 1, 1]  # SIGKILLs while step 0, 1, 2 runs
    steps = [{"title": f"step {i}", "run": dvault.step(go=dvault.root / f"go-{i}",
                                                     guard=dvault.root / f"guard-{i}")}
             for i in range(3)]
    write_plan(dvault, PID, steps)
    with ParsePoller(dvault) as poller:
        d = daemons(tick=0.3)
        for i, k in enumerate(kills):
            for n in range(1, k + 2):
                mark = wait_for(lambda i=i, n=n: len(starts(dvault, i)) == n
                                and starts(dvault, i)[-1], 10, f"start {n} of step {i}",
                                diag=d.log)
                if n == k + 1:
                    break
                assert plan(dvault, PID).in_flight["index"] == i
                d.kill()
                # The dead man's switch: the step (the daemon's direct child) dies with it.
                wait_for(lambda pid=mark[4]: pid_gone(pid), 5, f"step pid {mark[4]} gone")
                p = plan(dvault, PID)
                assert p.status.value == "executing" and p.current_index == i
                d = daemons(tick=0.3)
            (dvault.root / f"go-{i}").touch()
        wait_for(lambda: plan(dvault, PID).status.value == "completed", 10, "completed",
                 diag=d.log)
        d.signal(signal.SIGTERM)
        assert d.wait(10) == 0
    assert not poller.errors, poller.errors[:3]
    assert poller.reads > 10

    got = marks(dvault.root / "marks")
    assert not [m for m in got if m[0] == "overlap"], got
    for i, k in enumerate(kills):
        assert len(starts(dvault, i)) == k + 1, got  # one re-run per kill, no more
        assert [m[3] for m in starts(dvault, i)] == list(range(1, k + 2))  # attempt numbers
        assert len([m for m in got if m[0] == "end" and m[2] == i]) == 1
    p = plan(dvault, PID)
    log = [(e["index"], e["outcome"]) for e in p.reflection_log]
    assert log == [(0, "interrupted"), (0, "interrupted"), (0, "ok"), (1, "interrupted"),
                   (1, "ok"), (2, "interrupted"), (2, "ok")]
    tokens = [e["token"] for e in events(dvault) if e["event"] in ("claimed", "orphan_recovered")]
    assert tokens == list(range(1, sum(kills) + 2))
    assert p.claim is None and p.last_token == sum(kills) + 1  # ended: the log keeps it


def test_sigkill_at_many_points_of_the_bookkeeping(dvault, daemons):
    """Kills land wherever the event log happens to be (claim, in-flight write, step end,
    reflection write): the plan still completes, at most one re-run per kill, no overlap."""
    rng = random.Random(7)
    steps = [{"title": f"s{i}", "run": dvault.step(guard=dvault.root / f"guard-{i}")}
             for i in range(6)]
    write_plan(dvault, PID, steps)
    kills = 0
    with ParsePoller(dvault) as poller:
        d = None
        while kills < 8:
            d = daemons(tick=0.3)
            target = len(events(dvault)) + rng.randint(2, 6)
            wait_for(lambda target=target: len(events(dvault)) >= target
                     or plan(dvault, PID).status.value == "completed", 10,
                     "some progress", interval=0.002, diag=d.log)
            if plan(dvault, PID).status.value == "completed":
                break
            d.kill()
            kills += 1
            d = None
        d = d or daemons(tick=0.3)
        wait_for(lambda: plan(dvault, PID).status.value == "completed", 15, "completed",
                 diag=d.log)
        wait_started(d, dvault)
        d.signal(signal.SIGTERM)
        assert d.wait(10) == 0
    assert not poller.errors, poller.errors[:3]
    got = marks(dvault.root / "marks")
    assert not [m for m in got if m[0] == "overlap"], got
    per_step = [len(starts(dvault, i)) for i in range(6)]
    assert all(n >= 1 for n in per_step)
    assert sum(per_step) <= 6 + kills, (per_step, kills)
    assert all(n <= 1 + kills for n in per_step)
    p = plan(dvault, PID)
    assert p.current_index == 6 and p.in_flight is None
    assert [e["index"] for e in p.reflection_log if e["outcome"] == "ok"] == list(range(6))


def test_grandchild_with_the_lock_fd_keeps_other_daemons_off(dvault, daemons):
    go = dvault.root / "go"
    # sh is the daemon's direct child (killed by PDEATHSIG); the python step is its
    # child, inherits the lock descriptor, and outlives the daemon.
    argv = ["/bin/sh", "-c", '"$0" "$@" & wait', *dvault.step(go=go, guard=dvault.root / "g")]
    write_plan(dvault, PID, [{"title": "long", "run": argv}, {"title": "after", "run": "true"}])
    lock = lock_path(dvault.plan_path(PID))
    d1 = daemons(tick=0.3)
    mark = wait_for(lambda: starts(dvault, 0), 10, "the grandchild started", diag=d1.log)[0]
    grandchild = mark[4]
    with open(f"/proc/{grandchild}/stat") as f:
        sh_pid = int(f.read().rsplit(")", 1)[1].split()[1])
    d1.kill()
    wait_for(lambda: pid_gone(sh_pid), 5, "the direct child killed with the daemon")
    assert not pid_gone(grandchild)
    assert is_held(lock)

    d2 = daemons(tick=0.3)
    wait_ticks(d2, dvault, 4)  # several scans in which the plan looked orphaned but locked
    assert plan(dvault, PID).claim["token"] == 1
    assert not [e for e in events(dvault) if e.get("pid") == d2.pid
                and e["event"] in ("claimed", "orphan_recovered", "step_started")]
    assert len(starts(dvault, 0)) == 1

    go.touch()  # the grandchild ends, its descriptor closes, the lock is free
    wait_for(lambda: pid_gone(grandchild), 5, "grandchild exited")
    wait_for(lambda: events(dvault, "orphan_recovered", pid=d2.pid), 5, "d2 takes the orphan",
             diag=d2.log)
    wait_for(lambda: plan(dvault, PID).status.value == "completed", 10, "completed",
             diag=d2.log)
    got = marks(dvault.root / "marks")
    assert not [m for m in got if m[0] == "overlap"]
    # At least once: the step re-ran after its first run, never beside it.
    assert [(m[0], m[4]) for m in got][:2] == [("start", grandchild), ("end", grandchild)]
    assert len(starts(dvault, 0)) == 2
    assert plan(dvault, PID).claim is None and plan(dvault, PID).last_token == 2  # ended


def test_rerun_after_crash_false_pauses_with_a_critical_ticket(dvault, daemons):
    write_plan(dvault, PID, [{"title": "charge the card", "rerun_after_crash": False,
                              "run": dvault.step(go=dvault.root / "go")},
                             {"title": "after", "run": "true"}])
    d1 = daemons(tick=0.3)
    mark = wait_for(lambda: starts(dvault, 0), 10, "step started", diag=d1.log)[0]
    d1.kill()
    wait_for(lambda: pid_gone(mark[4]), 5, "step gone")
    (dvault.root / "go").touch()  # would succeed at once if it were re-run
    d2 = daemons(tick=0.3)
    wait_for(lambda: plan(dvault, PID).status.value == "paused", 10, "paused", diag=d2.log)
    p = plan(dvault, PID)
    assert p.current_index == 0 and p.in_flight is None
    assert p.reflection_log[-1]["outcome"] == "interrupted"
    assert p.reflection_log[-1]["decision"] == "pause"
    assert "rerun_after_crash: false" in p.last_error
    assert len(starts(dvault, 0)) == 1
    text = wait_ticket(dvault, PID).read_text()
    assert len(list((dvault.root / "P" / "tickets").glob("*.md"))) == 1
    assert "severity: critical" in text and "decision: pending" in text
    assert f"plan: {PID}" in text
    assert events(dvault, "ticket_opened", plan=PID, severity="critical")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_step_leaves_the_plan_resumable(dvault, daemons, sig):
    go = dvault.root / "go"
    write_plan(dvault, PID, [{"title": "long", "run": dvault.step(go=go)},
                             {"title": "after", "run": "true"}])
    d1 = daemons(tick=0.5)
    mark = wait_for(lambda: starts(dvault, 0), 10, "step started", diag=d1.log)[0]
    step_pid = mark[4]
    assert group_members(step_pid) == [step_pid]
    d1.signal(sig)
    assert d1.wait(10) == 0
    p = plan(dvault, PID)
    assert p.status.value == "executing" and p.current_index == 0
    assert p.in_flight["index"] == 0 and p.in_flight["attempt"] == 1
    assert not is_held(lock_path(dvault.plan_path(PID)))
    assert group_members(step_pid) == []
    assert not list(dvault.vault.daemons_dir.glob("*.json"))  # heartbeat removed
    assert events(dvault, "daemon_stopped", pid=d1.pid)

    go.touch()
    d2 = daemons(tick=0.5)
    wait_for(lambda: plan(dvault, PID).status.value == "completed", 10, "completed",
             diag=d2.log)
    log = plan(dvault, PID).reflection_log
    assert [(e["index"], e["attempt"], e["outcome"], e["decision"]) for e in log] == [
        (0, 1, "interrupted", "retry"), (0, 2, "ok", "continue"), (1, 1, "ok", "continue")]
    assert log[0]["token"] == 1 and log[1]["token"] == 2


def test_second_signal_stops_at_once(dvault, daemons):
    """A step that shrugs off SIGTERM: the first signal waits out the grace, the second kills."""
    write_plan(dvault, PID, [{"title": "stubborn",
                              "run": dvault.step(go=dvault.root / "never", note_term=True)}])
    d = daemons(tick=0.5)
    mark = wait_for(lambda: starts(dvault, 0), 10, "step started", diag=d.log)[0]
    d.signal(signal.SIGTERM)
    wait_for(lambda: [m for m in marks(dvault.root / "marks") if m[0] == "term"], 5,
             "the step got SIGTERM and carried on", diag=d.log)
    assert d.alive() and not pid_gone(mark[4])
    d.signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert d.wait(10) == 0
    assert time.monotonic() - t0 < 2.0, "the second signal waited out the kill grace"
    assert pid_gone(mark[4])
    p = plan(dvault, PID)
    assert p.status.value == "executing" and p.in_flight["index"] == 0
    assert not is_held(lock_path(dvault.plan_path(PID)))
    assert not os.path.exists(dvault.root / "never")

"""The claim compare-and-swap against a real second process: one that claimed the plan
holds it (a lost race), then dies by SIGKILL and leaves an orphan that the next claim
takes over with a higher token. The rest of claim.py is tested in tests/unit/test_claim.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from modulatio_d.core.plan import PlanStatus
from modulatio_d.daemon.claim import Claimed, Claimer, Missed
from modulatio_d.daemon.scan import Candidate, Scanner
from modulatio_d.store.events import EventLog, read
from modulatio_d.store.lock import holder, is_held, lock_path
from modulatio_d.store.plan_file import read_plan

pytestmark = pytest.mark.timeout(30)

PLAN = """\
---
id: P-P-001
title: A plan
status: approved
sub_objectives: [one, two]
current_index: 0
reflection_log: []
---
"""

# Claims the plan as the scan saw it (approved), prints the token or why it missed, and
# holds the lock until killed.
CLAIM_AND_HOLD = """\
import os, socket, sys
from datetime import UTC, datetime
from modulatio_d.core.plan import PlanStatus
from modulatio_d.daemon.claim import Claimer
from modulatio_d.daemon.scan import Candidate
from modulatio_d.store.events import EventLog
from modulatio_d.store.vault import Vault
vault = Vault(sys.argv[1])
c = Candidate((0,), vault.plan_path("P", "P-P-001"), "P", PlanStatus.APPROVED)
got = Claimer(vault, EventLog(vault.events_path), lambda: datetime.now(UTC),
              socket.gethostname(), os.getpid()).claim(c)
print(getattr(got, "token", got), flush=True)
sys.stdin.read()
"""


def start(vault) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLAIM_AND_HOLD, str(vault.root)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_a_claim_held_by_a_live_process_is_lost_then_its_orphan_is_taken_over(vault):
    path = vault.plan_path("P", "P-P-001")
    path.parent.mkdir(parents=True)
    path.write_text(PLAN)
    other = start(vault)
    events = EventLog(vault.events_path)
    mine = Claimer(vault, events, lambda: datetime.now(UTC), "here", os.getpid())
    scanner = Scanner(vault, None, events)
    try:
        assert other.stdout.readline().strip() == "1"
        assert holder(lock_path(path))["pid"] == other.pid
        # What a daemon that scanned a moment before the other claimed would try:
        seen = Candidate((0,), path, "P", PlanStatus.APPROVED)
        assert mine.claim(seen) is Missed.LOST
        assert scanner.scan(datetime.now(UTC)) == []  # executing and locked: not offered
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    assert not is_held(lock_path(path))  # a killed holder's flock is freed at once
    (c,) = scanner.scan(datetime.now(UTC))  # now an orphan: offered
    assert c.status is PlanStatus.EXECUTING
    got = mine.claim(c)
    assert isinstance(got, Claimed) and got.token == 2
    got.lock.release()
    assert read_plan(vault, path).plan.claim["pid"] == os.getpid()
    (recovered,) = [e for e in read(vault.events_path) if e["event"] == "orphan_recovered"]
    assert recovered["previous_claim"]["pid"] == other.pid


def test_processes_claiming_at_once_one_wins_the_others_lose_the_race(vault):
    path = vault.plan_path("P", "P-P-001")
    path.parent.mkdir(parents=True)
    path.write_text(PLAN)
    racers = [start(vault) for _ in range(4)]
    try:
        results = [r.stdout.readline().strip() for r in racers]
    finally:
        for r in racers:
            r.send_signal(signal.SIGKILL)
            r.wait()
    assert sorted(results) == ["1", *[Missed.LOST.value] * 3]  # the winner holds on
    assert read_plan(vault, path).plan.claim["token"] == 1

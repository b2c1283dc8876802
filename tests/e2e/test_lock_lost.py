"""A plan's lock file deleted or replaced while its step runs (issue 9, defect 8).

Daemon A runs step 0 (which holds a sentinel flock of its own: a second copy
running at the same time notes `overlap`); daemon B idles beside it. The lock
file goes (a person, a sync tool). B finds the plan `executing` under a free
lock, but its claim names A, alive on this host: held, not an orphan (told
once). A notices at its next beat (`lock_lost`) but does not kill the running
step: it ends as it would, its result is written (the plan still carries A's
token), no new step starts under A, and the plan goes to the new lock's holder
from step 1. Never two copies of the step at once, and step 0 runs once.
"""

from __future__ import annotations

import os

import pytest
from helpers import (
    events,
    marks,
    settled,
    starts,
    wait_started,
    write_plan,
)
from waiting import wait_for

PID = "P-P-001"


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_lost_lock_file_never_lets_a_step_run_twice_at_once(dvault, daemons, tmp_path, how):
    go, guard = tmp_path / "go", tmp_path / "guard"
    path = write_plan(dvault, PID, [{"title": "guarded", "run": dvault.step(go=go, guard=guard)},
                                    {"title": "after", "run": dvault.step()}])
    lock = path.with_suffix(".lock")
    # A beats every 2 s during a step; B looks every 0.3 s: B meets the plan first.
    a = daemons(tick=4)
    wait_for(lambda: starts(dvault, 0), 20, "step 0 started by A", diag=a.log)
    b = daemons(tick=0.3)
    wait_started(b, dvault)
    if how == "deleted":
        lock.unlink()
    else:  # a sync tool putting back its copy: a new inode at the same name
        (tmp_path / "synced.lock").write_text("{}")
        os.replace(tmp_path / "synced.lock", lock)

    wait_for(lambda: events(dvault, "claim_refused_live_holder", plan=PID), 10,
             "B refusing the plan A still runs", diag=b.log)
    lost = wait_for(lambda: events(dvault, "lock_lost", plan=PID), 10, "A seeing its lock lost",
                    diag=a.log)
    assert lost[0]["pid"] == a.pid and lost[0]["how"] in ("deleted", "replaced")
    go.touch()  # step 0, still A's, ends as it would
    done = wait_for(settled(dvault, PID, "completed"), 30, "the plan completed",
                    diag=lambda: a.log() + b.log())
    assert not [m for m in marks(dvault.root / "marks") if m[0] == "overlap"], \
        "two copies of step 0 ran at the same time"
    refused = events(dvault, "claim_refused_live_holder", plan=PID)
    assert len(refused) == 1 and refused[0]["pid"] == b.pid and refused[0]["holder_pid"] == a.pid
    assert len(starts(dvault, 0)) == 1, "step 0 ran again although its result was written"
    log = [(e["index"], e["outcome"], e["token"]) for e in done.reflection_log]
    assert log[0] == (0, "ok", 1) and log[-1][:2] == (1, "ok") and log[-1][2] > 1, log
    assert a.alive() and b.alive()

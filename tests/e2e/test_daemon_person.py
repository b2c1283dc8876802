"""A person acting on a plan while a daemon runs it: pause, abort, a stale editor save."""

from __future__ import annotations

import os
import re
import time

import pytest
from helpers import (
    cli,
    events,
    group_members,
    marks,
    pid_gone,
    plan,
    save_like_vim,
    starts,
    wait_ticks,
    write_plan,
)
from waiting import wait_for

from modulatio_d.store.lock import is_held, lock_path

pytestmark = pytest.mark.timeout(30)
PID = "P-P-001"


def three_steps(dv) -> None:
    write_plan(dv, PID, [{"title": f"step {i}", "run": dv.step(go=dv.root / f"go-{i}")}
                         for i in range(3)])


def set_status_in_place(path, status: str) -> None:
    """VS Code's save: truncate and write the same inode."""
    text = re.sub(r"(?m)^status: \w+", f"status: {status}", path.read_text(), count=1)
    with open(path, "r+") as f:
        f.truncate(0)
        f.write(text)


def set_status_like_vim(path, status: str) -> None:
    save_like_vim(path, re.sub(r"(?m)^status: \w+", f"status: {status}", path.read_text(),
                               count=1))


@pytest.mark.parametrize("how", ["command", "editor in place", "editor rename"])
def test_pause_mid_step_finishes_the_step_then_stops(dvault, daemons, how):
    three_steps(dvault)
    d = daemons(tick=0.5)
    (dvault.root / "go-0").touch()
    wait_for(lambda: starts(dvault, 1), 10, "step 1 started", diag=d.log)
    path = dvault.plan_path(PID)
    if how == "command":
        r = cli(dvault, "plan", "pause", PID)
        assert r.code == 0, r.err
    elif how == "editor in place":
        set_status_in_place(path, "paused")
    else:
        set_status_like_vim(path, "paused")
    assert plan(dvault, PID).status.value == "paused"
    (dvault.root / "go-1").touch()
    (dvault.root / "go-2").touch()
    wait_for(lambda: plan(dvault, PID).current_index == 2 and not plan(dvault, PID).in_flight,
             10, "step 1 recorded", diag=d.log)
    wait_for(lambda: not is_held(lock_path(path)), 5, "lock released", diag=d.log)
    p = plan(dvault, PID)
    assert p.status.value == "paused"
    assert [(e["index"], e["outcome"]) for e in p.reflection_log] == [(0, "ok"), (1, "ok")]
    assert not starts(dvault, 2), "a step after the pause ran"
    assert "The body, people's own.\n" in path.read_text()
    assert not list((dvault.root / "P").glob("tickets/*.md")), "a person's pause needs no ticket"
    assert d.alive()


@pytest.mark.parametrize("how", ["command", "editor in place"])
def test_abort_mid_step_kills_the_step_now(dvault, daemons, how):
    three_steps(dvault)
    d = daemons(tick=3600)  # inotify, not the hour-long tick, must bring the abort in
    mark = wait_for(lambda: starts(dvault, 0), 10, "step 0 started", diag=d.log)[0]
    step_pid = mark[4]
    if how == "command":
        r = cli(dvault, "plan", "abort", PID)
        assert r.code == 0, r.err
    else:
        set_status_in_place(dvault.plan_path(PID), "aborted")
    wait_for(lambda: pid_gone(step_pid), 30, "the step killed", diag=d.log)
    assert group_members(step_pid) == []
    wait_for(lambda: not plan(dvault, PID).in_flight, 5, "attempt recorded", diag=d.log)
    p = plan(dvault, PID)
    assert p.status.value == "aborted" and p.current_index == 0
    assert p.reflection_log[-1]["outcome"] == "aborted"
    assert p.reflection_log[-1]["decision"] == "abort"
    wait_for(lambda: not is_held(lock_path(dvault.plan_path(PID))), 5, "lock released")
    assert not [m for m in marks(dvault.root / "marks") if m[0] == "end"]
    assert d.alive()


def test_half_written_save_mid_step_is_not_refused(dvault, daemons):
    """An editor writing in place is seen half way (truncated, then a partial head): the
    daemon waits for the rest instead of calling the file bad."""
    three_steps(dvault)
    path = dvault.plan_path(PID)
    d = daemons(tick=0.5)
    wait_for(lambda: starts(dvault, 0), 10, "step 0 started", diag=d.log)
    text = re.sub(r"(?m)^status: \w+", "status: paused", path.read_text(), count=1)
    with open(path, "r+") as f:
        f.truncate(0)
        f.write(text[: text.index("sub_objectives")])
        f.flush()
        wait_ticks(d, dvault, 2)  # the daemon woke (inotify) and looked at least twice
        f.write(text[text.index("sub_objectives"):])
    (dvault.root / "go-0").touch()
    wait_for(lambda: plan(dvault, PID).current_index == 1 and not plan(dvault, PID).in_flight,
             10, "step 0 recorded", diag=d.log)
    assert plan(dvault, PID).status.value == "paused"
    assert not events(dvault, "file_refused"), events(dvault, "file_refused")
    assert "ERROR" not in d.log(), d.log()


def test_broken_save_mid_step_is_left_alone_until_fixed(dvault, daemons):
    """A person saves a plan with a YAML mistake while its step runs: when the step ends the
    daemon does not write into the broken file; it waits, then honours the fixed one."""
    three_steps(dvault)
    path = dvault.plan_path(PID)
    d = daemons(tick=0.5)
    wait_for(lambda: starts(dvault, 0), 10, "step 0 started", diag=d.log)
    good = re.sub(r"(?m)^status: \w+", "status: paused", path.read_text(), count=1)
    good = good.replace(f"title: Plan {PID}", "title: Fixed by a person")
    broken = good.replace("title: Fixed by a person", "title: [oops")
    save_like_vim(path, broken)
    past = time.time() - 10  # saved a while ago: not an editor half way through a write
    os.utime(path, (past, past))
    wait_for(lambda: events(dvault, "file_refused"), 5, "the broken save reported", diag=d.log)
    (dvault.root / "go-0").touch()
    wait_for(lambda: [m for m in marks(dvault.root / "marks") if m[0] == "end"], 5, "step ends")
    wait_ticks(d, dvault, 3)  # the daemon has tried to record the attempt meanwhile
    assert path.read_text() == broken, "the daemon wrote into a file a person left broken"
    assert len(events(dvault, "file_refused")) == 1
    save_like_vim(path, good)
    wait_for(lambda: not plan(dvault, PID).in_flight, 10, "attempt recorded", diag=d.log)
    wait_for(lambda: not is_held(lock_path(path)), 5, "lock released", diag=d.log)
    p = plan(dvault, PID)
    assert p.status.value == "paused" and p.current_index == 1
    assert p.title == "Fixed by a person"
    assert [(e["index"], e["outcome"]) for e in p.reflection_log] == [(0, "ok")]
    assert not starts(dvault, 1)


@pytest.mark.parametrize("stale_status", [None, "paused"])
def test_stale_editor_save_never_reruns_finished_work(dvault, daemons, stale_status):
    three_steps(dvault)
    path = dvault.plan_path(PID)
    d = daemons(tick=0.5)
    wait_for(lambda: starts(dvault, 0), 10, "step 0 started", diag=d.log)
    buffer = path.read_text()  # the editor opens the plan now: executing, step 0 in flight
    assert "in_flight" in buffer and "status: executing" in buffer
    (dvault.root / "go-0").touch()
    wait_for(lambda: starts(dvault, 1), 10, "step 1 started", diag=d.log)
    rev_before = plan(dvault, PID).rev

    stale = buffer.replace(f"title: Plan {PID}", "title: Renamed by a person")
    if stale_status:
        stale = re.sub(r"(?m)^status: \w+", f"status: {stale_status}", stale, count=1)
    assert stale != buffer
    save_like_vim(path, stale)
    wait_for(lambda: events(dvault, "stale_save_repaired", plan=PID), 5,
             "stale save repaired", diag=d.log)
    (dvault.root / "go-1").touch()
    (dvault.root / "go-2").touch()
    want = stale_status or "completed"
    wait_for(lambda: plan(dvault, PID).status.value == want and not plan(dvault, PID).in_flight,
             10, want, diag=d.log)
    wait_for(lambda: not is_held(lock_path(path)), 5, "lock released")

    p = plan(dvault, PID)
    assert p.title == "Renamed by a person"
    assert p.rev > rev_before
    assert len(starts(dvault, 0)) == 1, "step 0 ran again after the stale save"
    assert len(starts(dvault, 1)) == 1
    ok = [e["index"] for e in p.reflection_log if e["outcome"] == "ok"]
    if stale_status:  # the person's pause in the old buffer wins after the running step
        assert p.current_index == 2 and ok == [0, 1] and not starts(dvault, 2)
    else:
        assert p.current_index == 3 and ok == [0, 1, 2] and len(starts(dvault, 2)) == 1
    assert "The body, people's own.\n" in path.read_text()


def test_fresh_edit_rewinding_a_paused_plan_is_honoured(dvault, daemons):
    """A person edits the current file (not a stale copy): a rewind of current_index on a
    paused plan re-runs that step when approved again."""
    go = dvault.root / "go"
    path = write_plan(dvault, PID, [{"title": "step 0", "run": dvault.step()},
                                    {"title": "step 1", "run": dvault.step(go=go)}])
    d = daemons(tick=0.5)
    wait_for(lambda: starts(dvault, 1), 10, "step 1 started", diag=d.log)
    assert cli(dvault, "plan", "pause", PID).code == 0
    go.touch()
    wait_for(lambda: plan(dvault, PID).status.value == "paused"
             and not is_held(lock_path(path)), 10, "paused", diag=d.log)
    assert plan(dvault, PID).current_index == 2
    text = re.sub(r"(?m)^current_index: \d+", "current_index: 0", path.read_text())
    save_like_vim(path, re.sub(r"(?m)^status: \w+", "status: approved", text, count=1))
    wait_for(lambda: plan(dvault, PID).status.value == "completed", 10, "completed",
             diag=d.log)
    assert len(starts(dvault, 0)) == 2 and len(starts(dvault, 1)) == 2
    assert not events(dvault, "stale_save_repaired")


def test_plan_deleted_mid_step_does_not_wedge_the_daemon(dvault, daemons):
    """A person deletes (or moves away) the plan while its step runs: once the step ends the
    daemon lets the plan go instead of waiting forever for the file, and runs the next one."""
    go = dvault.root / "go"
    path = write_plan(dvault, PID, [{"title": "long", "run": dvault.step(go=go)}])
    d = daemons(tick=0.3)
    wait_for(lambda: starts(dvault, 0), 10, "step started", diag=d.log)
    path.rename(dvault.root / "archived.md")
    go.touch()
    write_plan(dvault, "P-P-002", [{"run": "true"}])
    wait_for(lambda: plan(dvault, "P-P-002").status.value == "completed", 10,
             "the next plan runs", diag=d.log)
    assert not path.exists()  # not recreated
    assert "P-P-001 left as it is" in d.log()
    assert d.alive()

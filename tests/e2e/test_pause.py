"""End to end: pause, drain and resume with real daemons (daemon/admission.py, ops/pausing.py).

The test steps (helpers.STEP_TOOL) wait for a go-file, so a test decides when
each step ends; marks say which step started and ended, and how many times.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

from helpers import (
    PROJECT,
    PY,
    clean_env,
    cli,
    events,
    marks,
    plan,
    settled,
    wait_started,
    wait_ticks,
    write_plan,
)
from waiting import wait_for

from modulatio_d.core import times
from modulatio_d.store.lock import is_held, lock_path

IDS = ("A", "B", "C")


def started(dvault, plan_id: str, index: int) -> list:
    return [m for m in marks(dvault.root / "marks")
            if m[0] == "start" and m[1] == plan_id and m[2] == index]


def three_step_plans(dvault) -> None:
    for plan_id in IDS:
        write_plan(dvault, plan_id, [
            {"title": f"s{i}", "run": dvault.step(go=dvault.root / f"go-{plan_id}-{i}")}
            for i in range(3)])


def due_cron_entry(dvault) -> str:
    """An entry whose one due time was two minutes ago (catch_up: once by default)."""
    now = datetime.now(UTC)
    due = now - timedelta(minutes=2)
    r = cli(dvault, "cron", "add", PROJECT, "Kick", "--schedule",
            f"{due.minute} {due.hour} * * *", "--timezone", "UTC", "--step", "true")
    assert r.code == 0, r.err
    cron_id = r.out.strip()
    path = dvault.root / PROJECT / "cron" / f"{cron_id}.md"
    text = path.read_text()
    start = text.index("created_at: ")
    earlier = times.format_time(now - timedelta(minutes=5))
    path.write_text(text[:start] + f"created_at: {earlier}" + text[text.index("\n", start):])
    return cron_id


def heartbeats(dvault) -> list[dict]:
    return [json.loads(p.read_text()) for p in dvault.vault.daemons_dir.glob("*.json")]


def test_pause_drains_at_the_step_boundary_and_resume_restores(dvault, daemons):
    three_step_plans(dvault)
    ds = [daemons() for _ in range(3)]
    for d in ds:
        wait_started(d, dvault)
    for plan_id in IDS:
        wait_for(lambda p=plan_id: started(dvault, p, 0), 20, f"{plan_id} step 0 started")
    r = cli(dvault, "pause", "--reason", "kernel upgrade")
    assert r.code == 0 and "paused the vault" in r.out, r.err
    for plan_id in IDS:  # the running steps finish...
        (dvault.root / f"go-{plan_id}-0").touch()
    for plan_id in IDS:  # ...and each plan stops there: resumable, lock free, nothing in flight
        wait_for(lambda p=plan_id: (pl := plan(dvault, p)).current_index == 1
                 and not pl.in_flight and not is_held(lock_path(dvault.plan_path(p))),
                 20, f"{plan_id} stopped at its step boundary", diag=ds[0].log)
        assert plan(dvault, plan_id).status.value == "executing"
    claims_before = len(events(dvault, "claimed")) + len(events(dvault, "orphan_recovered"))
    cron_id = due_cron_entry(dvault)  # due now: must not fire while paused
    for plan_id in IDS:
        for i in (1, 2):
            (dvault.root / f"go-{plan_id}-{i}").touch()  # nothing holds them back but the pause
    for d in ds:
        wait_ticks(d, dvault, 3)
    assert not [m for m in marks(dvault.root / "marks") if m[2] > 0]
    assert len(events(dvault, "claimed")) + len(events(dvault, "orphan_recovered")) \
        == claims_before
    assert not list((dvault.root / PROJECT / "plans").glob(f"{cron_id}-*.md"))
    # it shows: status (text and JSON), heartbeats, metrics
    s = json.loads(cli(dvault, "status", "--json").out)
    assert s["control"]["pause"]["vault"]["reason"] == "kernel upgrade"
    assert "PAUSED: the whole vault" in cli(dvault, "status").out
    beats = json.loads(cli(dvault, "heartbeat", "--all").out)
    assert len(beats) == 3
    assert all(str(b.get("paused", "")).startswith("paused (vault by ") for b in beats)
    assert 'modulatio_paused{scope="vault"} 1' in cli(dvault, "metrics").out
    drained = cli(dvault, "drain", "--wait", "--timeout", "5")
    assert drained.code == 0 and "drained" in drained.out
    r = cli(dvault, "resume")
    assert r.code == 0 and "resumed the vault" in r.out
    for plan_id in IDS:
        wait_for(settled(dvault, plan_id, "completed"), 30, f"{plan_id} completed",
                 diag=ds[0].log)
    kickoff = wait_for(lambda: list((dvault.root / PROJECT / "plans").glob(f"{cron_id}-*.md")),
                       20, "the kickoff due while paused fired on resume")
    assert len(kickoff) == 1
    for plan_id in IDS:  # nothing ran twice
        assert [m[2] for m in marks(dvault.root / "marks")
                if m[0] == "start" and m[1] == plan_id] == [0, 1, 2]
    assert 'modulatio_paused{scope="vault"} 0' in cli(dvault, "metrics").out
    assert not (dvault.vault.meta / "pause.yaml").exists()


def test_drain_wait_returns_only_when_no_step_runs(dvault, daemons):
    go = dvault.root / "go"
    write_plan(dvault, "LONG", [{"title": "long", "run": dvault.step(go=go)},
                                {"title": "next", "run": dvault.step()}])
    d = daemons()
    wait_for(lambda: started(dvault, "LONG", 0), 20, "step started", diag=d.log)
    short = cli(dvault, "drain", "--wait", "--timeout", "0.3")
    assert short.code == 1 and f"{PROJECT}/LONG" in short.out
    drain = subprocess.Popen([PY, "-m", "modulatio_d", "drain", "--wait", "--json", "--vault",
                              str(dvault.root)], stdout=subprocess.PIPE, text=True,
                             env=clean_env())
    try:
        wait_ticks(d, dvault, 3)  # the daemon beat three times: the drain still waits
        assert drain.poll() is None
        go.touch()
        out, _ = drain.communicate(timeout=20)
    finally:
        if drain.poll() is None:
            drain.kill()
    assert drain.returncode == 0 and json.loads(out) == {"drained": True, "running": []}
    p = plan(dvault, "LONG")
    assert p.current_index == 1 and not p.in_flight
    assert not is_held(lock_path(dvault.plan_path("LONG")))
    assert not started(dvault, "LONG", 1)
    assert cli(dvault, "resume").code == 0
    wait_for(settled(dvault, "LONG", "completed"), 20, "LONG completed", diag=d.log)


def test_pause_now_stops_the_step_and_it_runs_again_on_resume(dvault, daemons):
    go = dvault.root / "go"
    write_plan(dvault, "NOW", [{"title": "long", "run": dvault.step(go=go)}])
    d = daemons()
    wait_for(lambda: started(dvault, "NOW", 0), 20, "step started", diag=d.log)
    r = cli(dvault, "pause", "--project", PROJECT, "--now", "--reason", "stop it")
    assert r.code == 0 and "stop their steps now" in r.out
    wait_for(lambda: not is_held(lock_path(dvault.plan_path("NOW"))), 20,
             "the step stopped and the plan let go", diag=d.log)
    p = plan(dvault, "NOW")
    assert p.status.value == "executing" and p.in_flight and p.current_index == 0
    assert not [m for m in marks(dvault.root / "marks") if m[0] == "end"]
    assert d.alive()  # the daemon goes on, paused
    wait_for(lambda: heartbeats(dvault)[0].get("paused") == "paused: P", 20,
             "the heartbeat says paused")
    go.touch()
    assert cli(dvault, "resume", "--project", PROJECT).code == 0
    wait_for(settled(dvault, "NOW", "completed"), 20, "NOW completed", diag=d.log)
    assert [m[3] for m in marks(dvault.root / "marks") if m[0] == "start"] == [1, 2]


def test_a_project_pause_holds_that_project_only(dvault, daemons):
    other = dvault.root / "Q" / "plans"
    other.mkdir(parents=True)
    assert cli(dvault, "pause", "--project", PROJECT).code == 0
    write_plan(dvault, "HELD", [{"title": "s", "run": dvault.step()}])
    q = other / "FREE.md"
    q.write_text("---\nid: FREE\ntitle: t\nstatus: approved\npriority: 50\nsub_objectives:\n"
                 "  - {title: s, run: 'true'}\ncurrent_index: 0\nreflection_log: []\n---\n")
    d = daemons()
    wait_for(lambda: "status: completed" in q.read_text(), 20, "Q's plan ran", diag=d.log)
    wait_ticks(d, dvault, 2)
    assert plan(dvault, "HELD").status.value == "approved"
    assert cli(dvault, "resume", "--project", PROJECT).code == 0
    wait_for(settled(dvault, "HELD", "completed"), 20, "HELD completed", diag=d.log)


def test_a_malformed_pause_file_is_refused_and_the_state_before_stays(dvault, daemons):
    write_plan(dvault, "ONE", [{"title": "s", "run": dvault.step(go=dvault.root / "go1")}])
    d = daemons()
    wait_for(lambda: started(dvault, "ONE", 0), 20, "ONE started", diag=d.log)
    assert cli(dvault, "pause", "--reason", "hold").code == 0
    wait_for(lambda: heartbeats(dvault)[0].get("paused"), 20, "the daemon saw the pause")
    pause_file = dvault.vault.meta / "pause.yaml"
    pause_file.write_text("vault: {by: me, at: yesterday}\n")  # at: not a time
    # (written in place: the daemon may first see it empty, refused as well)
    refusal = wait_for(lambda: [e for e in events(dvault, "file_refused", kind="pause")
                                if "at must be a time" in e["reason"]], 20,
                       "pause file refused", diag=d.log)[0]
    assert refusal["line"] == 1 and refusal["path"] == ".modulatio/pause.yaml"
    (dvault.root / "go1").touch()
    write_plan(dvault, "TWO", [{"title": "s", "run": dvault.step()}])
    wait_ticks(d, dvault, 3)  # still paused: the state read before stays in force
    assert not started(dvault, "TWO", 0)
    r = cli(dvault, "pause")  # a command does not overwrite a person's broken file
    assert r.code != 0 and "pause.yaml:1" in r.err
    s = json.loads(cli(dvault, "status", "--json").out)
    assert "pause.yaml:1" in s["control"]["pause"]["unreadable"]
    # a daemon starting on the broken file counts the vault as paused
    d2 = daemons()
    wait_ticks(d2, dvault, 3)
    assert not started(dvault, "TWO", 0)
    beat = [b for b in heartbeats(dvault) if b["pid"] == d2.pid][0]
    assert beat["paused"] == "paused: the pause file is refused"
    pause_file.unlink()  # removed: nothing is paused
    for plan_id in ("ONE", "TWO"):
        wait_for(settled(dvault, plan_id, "completed"), 20, f"{plan_id} completed", diag=d.log)

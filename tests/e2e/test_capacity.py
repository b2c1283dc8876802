"""End to end: capacity and headroom with real daemons (daemon/admission.py, store/slots.py).

Each step of these plans leaves a sentinel file while it runs and appends how
many sentinels it saw at its start: the count a step sees is never more than
the steps really running at that instant, so a count over the limit is a real
overrun. `status --json` is sampled meanwhile: the slots it shows in use never pass
the limit, and reach it.
"""

from __future__ import annotations

import json
import os

from helpers import PROJECT, cli, events, marks, settled, wait_started, write_plan
from waiting import wait_for

from modulatio_d.core.plan import PlanStatus


def sentinel_step(dvault, pause_s: float = 0.05) -> dict:
    run = dvault.root / "running"
    run.mkdir(exist_ok=True)
    script = (f'f={run}/"$MODULATIO_PLAN_ID"; : > "$f"; ls {run} | wc -l >> {dvault.root}/seen;'
              f' sleep {pause_s}; rm "$f"')
    return {"title": "sentinel", "run": ["/bin/sh", "-c", script]}


def config(dvault, text: str) -> None:
    path = dvault.vault.config_path
    tmp = path.with_name(".config.yaml.new")
    tmp.write_text(text)
    os.replace(tmp, path)


def status(dvault) -> dict:
    r = cli(dvault, "status", "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_three_daemons_never_run_more_of_a_project_than_its_capacity(dvault, daemons):
    config(dvault, "capacity:\n  projects: {P: 2}\n")
    ids = [f"CAP-{i:02d}" for i in range(30)]
    for plan_id in ids:
        write_plan(dvault, plan_id, [sentinel_step(dvault), sentinel_step(dvault)])
    started = [daemons() for _ in range(3)]
    most = {"slots": 0}

    def sample_until_done() -> bool:
        s = status(dvault)
        (slot,) = [g for g in s["control"]["slots"] if g["limit_of"] == f"project {PROJECT}"]
        most["slots"] = max(most["slots"], slot["in_use"])
        # (not the executing plans with a held lock: status reads them one after the
        # other while plans end and start, so its list is no snapshot)
        assert slot["in_use"] <= 2, s["control"]
        return s["counts"]["by_status"]["completed"] == len(ids)

    wait_for(sample_until_done, 120, "all 30 plans completed", interval=0.05,
             diag=lambda: started[0].log()[-3000:])
    seen = [int(n) for n in (dvault.root / "seen").read_text().split()]
    assert len(seen) == 60  # every step ran once: no duplicate run
    assert max(seen) <= 2, seen
    assert max(seen) == 2 and most["slots"] == 2  # the limit was reached, not just kept
    assert events(dvault, "slot_wait")  # plans did wait for a slot
    for d in started:
        assert d.alive()


def test_headroom_lets_a_high_priority_plan_start_while_a_low_one_waits(dvault, daemons):
    config(dvault, "capacity:\n  vault: 2\n  headroom: {slots: 1, min_priority: 80}\n")
    go = {name: dvault.root / f"go-{name}" for name in ("BUSY", "HIGH", "LOW")}
    write_plan(dvault, "BUSY", [{"title": "hold", "run": dvault.step(go=go["BUSY"])}],
               priority=50)
    for _ in range(3):
        wait_started(daemons(), dvault)
    wait_for(lambda: [m for m in marks(dvault.root / "marks") if m[:2] == ("start", "BUSY")],
             20, "BUSY started")
    # every normal slot is busy: a priority-90 plan takes the headroom at once,
    # a priority-10 one waits even though two daemons are idle
    write_plan(dvault, "LOW", [{"title": "low", "run": dvault.step(go=go["LOW"])}],
               priority=10)
    write_plan(dvault, "HIGH", [{"title": "high", "run": dvault.step(go=go["HIGH"])}],
               priority=90)
    wait_for(lambda: [m for m in marks(dvault.root / "marks") if m[:2] == ("start", "HIGH")],
             20, "HIGH started")
    wait_for(lambda: events(dvault, "slot_wait", plan="LOW"), 20, "LOW waiting for a slot")
    wait_for(lambda: "LOW" in status(dvault)["control"]["waiting_for_slot"], 20,
             "status shows LOW waiting")
    slots = {g["limit_of"]: g for g in status(dvault)["control"]["slots"]}
    assert slots["vault"]["in_use"] == 2
    assert sorted(h["plan"] for h in slots["vault"]["holders"]) == ["BUSY", "HIGH"]
    assert not [m for m in marks(dvault.root / "marks") if m[1] == "LOW"]
    text = cli(dvault, "status").out
    assert "slots of vault: 2/2 in use" in text and "waiting for a slot: LOW" in text
    go["LOW"].touch()
    go["HIGH"].touch()  # the headroom frees; LOW may not use it, so it still waits
    wait_for(settled(dvault, "HIGH", "completed"), 20, "HIGH completed")
    assert not [m for m in marks(dvault.root / "marks") if m[1] == "LOW"]
    go["BUSY"].touch()  # a normal slot frees: LOW runs
    for plan_id in ("BUSY", "LOW"):
        wait_for(settled(dvault, plan_id, "completed"), 20, f"{plan_id} completed")
    low_start = [i for i, m in enumerate(marks(dvault.root / "marks")) if m[:2] == ("start", "LOW")]
    busy_end = [i for i, m in enumerate(marks(dvault.root / "marks")) if m[:2] == ("end", "BUSY")]
    assert low_start[0] > busy_end[0]


def test_a_deleted_slot_file_is_noticed_like_a_plan_lock(dvault, daemons):
    config(dvault, "capacity:\n  vault: 1\n")
    go = dvault.root / "go"
    write_plan(dvault, "SLOT", [{"title": "one", "run": dvault.step(go=go)},
                                {"title": "two", "run": dvault.step()}])
    d = daemons()
    wait_for(lambda: [m for m in marks(dvault.root / "marks") if m[0] == "start"], 20,
             "step one started", diag=d.log)
    slot = dvault.vault.meta / "slots" / "vault" / "0.lock"
    assert slot.exists()
    slot.unlink()
    wait_for(lambda: events(dvault, "lock_lost", plan="SLOT"), 20, "lock_lost told",
             diag=d.log)
    (lost,) = events(dvault, "lock_lost", plan="SLOT")
    assert lost["lock"].endswith("slots/vault/0.lock") and lost["how"] == "deleted"
    go.touch()
    p = wait_for(settled(dvault, "SLOT", "completed"), 30, "SLOT completed", diag=d.log)
    assert p.status is PlanStatus.COMPLETED
    # the step running when the file went was not killed and did not run twice
    assert [m[2] for m in marks(dvault.root / "marks") if m[0] == "start"] == [0, 1]


def test_a_bad_capacity_config_keeps_the_limit_before_it_and_at_start_runs_nothing(
        dvault, daemons):
    config(dvault, "capacity:\n  projects: {P: -1}\n")  # refused at start: no limit known
    write_plan(dvault, "WAIT", [sentinel_step(dvault)])
    d = daemons()
    wait_for(lambda: events(dvault, "file_refused", kind="config"), 20, "config refused",
             diag=d.log)
    wait_for(lambda: events(dvault, "slot_wait", plan="WAIT"), 20, "WAIT held back",
             diag=d.log)
    assert not (dvault.root / "seen").exists()
    refused = status(dvault)["control"]["capacity"]["refused"]
    assert "config.yaml:2" in refused and "projects.P" in refused
    config(dvault, "capacity:\n  projects: {P: 1}\n")  # fixed: runs, one at a time
    wait_for(settled(dvault, "WAIT", "completed"), 20, "WAIT completed", diag=d.log)
    d2 = daemons()  # starts on the good config
    wait_started(d2, dvault)
    config(dvault, "capacity:\n  projects: {P: many}\n")  # bad again: P: 1 stays in force
    wait_for(lambda: [e["pid"] for e in events(dvault, "file_refused", kind="config")]
             in ([d.pid, d.pid, d2.pid], [d.pid, d2.pid, d.pid]), 20,
             "the second bad config refused by both daemons", diag=d2.log)
    ids = [f"AFTER-{i}" for i in range(4)]
    for plan_id in ids:
        write_plan(dvault, plan_id, [sentinel_step(dvault, 0.2)])
    for plan_id in ids:
        wait_for(settled(dvault, plan_id, "completed"), 30, f"{plan_id} completed",
                 diag=d.log)
    seen = [int(n) for n in (dvault.root / "seen").read_text().split()]
    assert len(seen) == 5 and max(seen) == 1, seen


def test_a_daemon_killed_mid_step_frees_its_slot_and_the_plan_resumes(dvault, daemons):
    config(dvault, "capacity:\n  vault: 1\n")
    go = dvault.root / "go"
    write_plan(dvault, "KILLED", [{"title": "long", "run": dvault.step(go=go)}])
    first = daemons()
    wait_for(lambda: [m for m in marks(dvault.root / "marks") if m[0] == "start"], 20,
             "the step started", diag=first.log)
    assert status(dvault)["control"]["slots"][0]["in_use"] == 1
    first.kill()  # SIGKILL: the step dies with it, the kernel frees the plan's lock and slot
    wait_for(lambda: status(dvault)["control"]["slots"][0]["in_use"] == 0, 20,
             "the slot freed")
    go.touch()
    second = daemons()
    wait_for(settled(dvault, "KILLED", "completed"), 20, "KILLED resumed and completed",
             diag=second.log)
    assert [m[3] for m in marks(dvault.root / "marks") if m[0] == "start"] == [1, 2]


def test_a_kickoff_obeys_the_pause_and_the_capacity(dvault):
    write_plan(dvault, "KICK", [sentinel_step(dvault)])
    assert cli(dvault, "pause", "--reason", "reboot").code == 0
    r = cli(dvault, "kickoff", "KICK")
    assert r.code == 1 and "the vault is paused" in r.err and "reboot" in r.err
    assert cli(dvault, "resume").code == 0
    config(dvault, "capacity:\n  projects: {P: 0}\n")
    r = cli(dvault, "kickoff", "KICK")
    assert r.code == 1 and "waits for a slot (project P full)" in r.err
    assert not (dvault.root / "seen").exists()
    config(dvault, "capacity:\n  projects: {P: 1}\n")
    r = cli(dvault, "kickoff", "KICK")
    assert r.code == 0, r.err
    assert (dvault.root / "seen").read_text().split() == ["1"]
    assert not status(dvault)["control"]["slots"][0]["in_use"]  # released

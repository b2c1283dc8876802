"""Scheduling keys with real daemons: after: chains, blocked plans, a delayed retry,
not_before and expires_at (docs/plan-file.md, "Scheduling")."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

from helpers import PROJECT, cli, events, marks, plan, settled, ticks, write_plan
from waiting import wait_for

from modulatio_d.core.times import format_time, parse_time


def _log(started) -> str:
    return "\n".join(d.log()[-3000:] for d in started)


def test_a_chain_runs_in_order_with_three_daemons(dvault, daemons):
    write_plan(dvault, "C", [{"run": dvault.step()}], extra="after: [B]")
    write_plan(dvault, "B", [{"run": dvault.step()}], extra="after: [A]")
    write_plan(dvault, "A", [{"run": dvault.step()}])
    started = [daemons() for _ in range(3)]
    wait_for(settled(dvault, "C", "completed"), 30, "C completed", diag=lambda: _log(started))
    order = [m[1] for m in marks(dvault.root / "marks")]
    assert order == ["A", "A", "B", "B", "C", "C"]  # start, end of each, never interleaved
    assert [e["plan"] for e in events(dvault, "claimed")] == ["A", "B", "C"]


def test_a_failed_dependency_blocks_and_unblock_lets_it_go(dvault, daemons):
    write_plan(dvault, "A", [{"run": dvault.step(exit=3), "on_failure": "abort"}])
    write_plan(dvault, "B", [{"run": dvault.step()}], extra="after: [A, GHOST]")
    started = [daemons() for _ in range(3)]
    wait_for(settled(dvault, "A", "failed"), 20, "A failed", diag=lambda: _log(started))
    show = cli(dvault, "plan", "show", "B")
    assert "blocked: A failed" in show.out and "GHOST missing" in show.out, show.out
    status = cli(dvault, "status")
    assert "B" in status.out and "blocked: A failed" in status.out, status.out
    assert plan(dvault, "B").status.value == "approved"  # blocked is shown, not written
    unblock = cli(dvault, "plan", "unblock", "B")
    assert unblock.code == 0 and "no longer waits for A" in unblock.out
    assert plan(dvault, "B").schedule.after == ("GHOST",)
    assert "GHOST missing" in cli(dvault, "plan", "show", "B").out
    write_plan(dvault, "GHOST", [{"run": dvault.step()}])
    wait_for(settled(dvault, "B", "completed"), 20, "B completed", diag=lambda: _log(started))


def test_a_cycle_is_refused_by_validate_and_approve(dvault):
    write_plan(dvault, "X", [{"run": "true"}], status="draft", extra="after: [Y]")
    write_plan(dvault, "Y", [{"run": "true"}], status="draft", extra="after: [X]")
    v = cli(dvault, "validate")
    assert v.code != 0 and "cycle (X -> Y -> X)" in v.out + v.err, v.out + v.err
    a = cli(dvault, "plan", "approve", "X")
    assert a.code != 0 and "cycle" in a.err, a.err
    assert plan(dvault, "X").status.value == "draft"


def test_a_failed_step_waits_its_retry_delay_without_holding_a_daemon(dvault, daemons):
    flag = dvault.root / "ok"
    write_plan(dvault, "R", [{"run": dvault.step(require=flag), "retries": 2,
                              "retry_delay": "2s", "on_failure": "abort"}])
    write_plan(dvault, "Q", [{"run": dvault.step()}], priority=10)
    d = daemons()
    wait_for(lambda: plan(dvault, "R").retry_wait, 20, "R released for a retry", diag=d.log)
    p = plan(dvault, "R")
    assert p.status.value == "approved" and p.claim is None
    at = parse_time(p.retry_wait["at"])
    failed_at = parse_time(p.reflection_log[-1]["ended_at"])
    assert timedelta(seconds=1.5) <= at - failed_at <= timedelta(seconds=3)
    assert "retry at" in cli(dvault, "status").out
    # the daemon is free meanwhile: the lower-priority plan runs during the wait
    wait_for(settled(dvault, "Q", "completed"), 10, "Q ran during R's delay", diag=d.log)
    assert datetime.now(UTC) < at + timedelta(seconds=1)
    flag.write_text("")
    done = wait_for(settled(dvault, "R", "completed"), 20, "R completed", diag=d.log)
    second = [m for m in marks(dvault.root / "marks") if m[1] == "R" and m[0] == "start"]
    assert len(second) == 2
    started_again = parse_time(done.reflection_log[-1]["started_at"])
    assert started_again >= at  # not a moment before its time
    assert done.retry_wait is None
    assert [e["failures"] for e in events(dvault, "retry_scheduled", plan="R")] == [1]


def test_not_before_and_expires_at(dvault, daemons):
    soon = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    write_plan(dvault, "LATER", [{"run": dvault.step()}],
               extra=f"not_before: {format_time(soon)}")
    write_plan(dvault, "STALE", [{"run": dvault.step()}],
               extra="expires_at: 2020-01-01T00:00:00Z")
    d = daemons()
    gone = wait_for(settled(dvault, "STALE", "failed"), 20, "STALE expired", diag=d.log)
    assert "expired" in gone.last_error and not gone.reflection_log
    done = wait_for(settled(dvault, "LATER", "completed"), 20, "LATER ran", diag=d.log)
    assert parse_time(done.reflection_log[0]["started_at"]) >= soon
    assert not [m for m in marks(dvault.root / "marks") if m[1] == "STALE"]
    assert PROJECT == "P"


def test_plans_with_one_concurrency_key_never_run_at_once_across_daemons(dvault, daemons):
    go = dvault.root / "go"
    for name in ("K1", "K2", "K3"):
        write_plan(dvault, name, [{"run": dvault.step(go=go, guard=dvault.root / "guard")}],
                   extra="concurrency_key: deploy-prod")
    write_plan(dvault, "OTHER", [{"run": dvault.step()}], extra="concurrency_key: other")
    started = [daemons() for _ in range(3)]
    wait_for(lambda: len([m for m in marks(dvault.root / "marks") if m[0] == "start"
                          and m[1].startswith("K")]) == 1, 20, "one K plan started",
             diag=lambda: _log(started))
    waiting = lambda: {e["plan"] for e in events(dvault, "slot_wait")  # noqa: E731
                       if e["limit"] == "concurrency key deploy-prod"}
    # The first K plan in line waits (those behind it may not even be tried: a plan
    # waiting for a limit keeps its place in line, daemon/admission.py).
    wait_for(waiting, 20, "a K plan waits for the key", diag=lambda: _log(started))
    # A free daemon would take K2 or K3 (they sort before OTHER) if the key let it.
    wait_for(settled(dvault, "OTHER", "completed"), 20, "another key runs meanwhile")
    assert len([m for m in marks(dvault.root / "marks") if m[0] == "start"
                and m[1].startswith("K")]) == 1
    go.write_text("")
    for name in ("K1", "K2", "K3"):
        wait_for(settled(dvault, name, "completed"), 30, f"{name} ran", diag=lambda: _log(started))
    seq = [(m[0], m[1]) for m in marks(dvault.root / "marks") if m[1].startswith("K")]
    assert "overlap" not in {w for w, _ in seq}
    assert [w for w, _ in seq] == ["start", "end"] * 3  # one after the other


def test_an_idle_daemon_runs_the_plan_waiting_for_the_one_a_file_event_brought(dvault, daemons):
    """The tick is an hour, so no timed scan falls inside this test: A is claimed on
    its approval's file event; when A ends, B (after: [A]), whose own file did not
    change, is looked at again without a scan (daemon/candidates.py), and runs."""
    write_plan(dvault, "B", [{"run": dvault.step()}], extra="after: [A]")
    write_plan(dvault, "A", [{"run": dvault.step()}], status="draft")
    d = daemons(tick=3600)
    beat = ticks(d, dvault)
    wait_for(lambda: beat() is not None, 20, "the first scan", diag=d.log)  # B waits
    path = dvault.plan_path("A")  # saved as an editor does (no lock held, no lost race)
    tmp = path.with_name(".A.md.swp")
    tmp.write_text(path.read_text().replace("status: draft", "status: approved"))
    tmp.rename(path)
    wait_for(settled(dvault, "B", "completed"), 20, "B run after A, not at the hour tick",
             diag=d.log)
    assert [e["plan"] for e in events(dvault, "claimed")] == ["A", "B"]
    heartbeat = dvault.vault.daemons_dir / f"{socket.gethostname()}.{d.pid}.json"
    wait_for(lambda: json.loads(heartbeat.read_text()).get("active_plan") is None, 10,
             "the heartbeat says idle again", diag=d.log)

"""Failures with real daemons: retries, pause with a ticket, a person's decision in the
ticket file or by `modulatio ticket`, and on_failure abort/continue."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from helpers import (
    cli,
    events,
    marks,
    plan,
    save_like_vim,
    settled,
    wait_ticket,
    wait_ticks,
    write_plan,
)
from waiting import wait_for

pytestmark = pytest.mark.timeout(30)


def test_retries_then_pause_with_a_ticket_and_approve_in_the_file(dvault, daemons):
    ok = dvault.root / "fixed"
    write_plan(dvault, "P-P-001", [{"title": "first", "run": "true"},
                                   {"title": "flaky", "run": dvault.step(require=ok),
                                    "retries": 2},
                                   {"title": "last", "run": "true"}])
    d = daemons(tick=0.5)
    p = wait_for(settled(dvault, "P-P-001", "paused"), 10, "paused", diag=d.log)
    assert p.current_index == 1
    assert [(e["index"], e["attempt"], e["outcome"], e["decision"])
            for e in p.reflection_log] == [(0, 1, "ok", "continue"), (1, 1, "failed", "retry"),
                                           (1, 2, "failed", "retry"), (1, 3, "failed", "pause")]
    assert p.reflection_log[-1]["exit"] == "exit 3"
    # steps counted from 1 in messages: flaky is the second
    assert p.last_error.startswith("step 2 (flaky): failed after 3 attempt(s); on_failure: pause")
    assert len([m for m in marks(dvault.root / "marks") if m[0] == "start"]) == 3

    ticket = wait_ticket(dvault, "P-P-001")
    text = ticket.read_text()
    for line in ("plan: P-P-001", "severity: warning", "decision: pending", "status: open"):
        assert line in text
    assert re.search(r"(?m)^created_at: \S+", text) and "reason: " in text
    assert "approve" in text and "decline" in text  # the body says what each does
    listed = json.loads(cli(dvault, "ticket", "list", "--json").out)
    assert [(t["id"], t["decision"]) for t in listed] == [("P-P-001-T-01", "pending")]

    ok.touch()  # the person fixes the cause, then approves in the ticket file
    save_like_vim(ticket, text.replace("decision: pending", "decision: approve"))
    p = wait_for(settled(dvault, "P-P-001", "completed"), 10, "completed", diag=d.log)
    assert [(e["index"], e["attempt"], e["outcome"], e["token"]) for e in p.reflection_log[4:]] \
        == [(1, 4, "ok", 2), (2, 1, "ok", 2)]
    after = ticket.read_text()
    assert "decision: approve" in after and "status: closed" in after and "applied_at:" in after
    assert after.split("---\n", 2)[2] == text.split("---\n", 2)[2]  # the body is untouched
    decided = events(dvault, "ticket_decided", ticket="P-P-001-T-01")
    assert len(decided) == 1 and decided[0]["decision"] == "approve"
    assert [e["token"] for e in events(dvault, "claimed", plan="P-P-001")] == [1, 2]


def test_ticket_decline_command_aborts_the_plan(dvault, daemons):
    write_plan(dvault, "P-P-001", [{"title": "works", "run": "true"},
                                   {"title": "fails", "run": "exit 4"}])
    write_plan(dvault, "P-P-002", [{"title": "fine", "run": "true"}])
    d = daemons(tick=0.5)
    wait_for(settled(dvault, "P-P-001", "paused"), 10, "paused", diag=d.log)
    wait_ticket(dvault, "P-P-001")
    r = cli(dvault, "ticket", "decline", "P-P-001-T-01")
    assert r.code == 0, r.err
    p = wait_for(settled(dvault, "P-P-001", "aborted"), 5, "aborted", diag=d.log)
    assert p.current_index == 1
    path = dvault.root / "P" / "tickets" / "P-P-001-T-01.md"
    wait_for(lambda: "status: closed" in path.read_text(), 5, "ticket closed")
    assert "decision: decline" in path.read_text()
    wait_for(settled(dvault, "P-P-002", "completed"), 5, "the other plan runs", diag=d.log)
    wait_for(lambda: events(dvault, "ticket_decided", ticket="P-P-001-T-01"), 5, "decided")
    wait_ticks(d, dvault, 2)
    assert len(events(dvault, "ticket_decided", ticket="P-P-001-T-01")) == 1
    # A second decision on a closed ticket is refused.
    assert cli(dvault, "ticket", "approve", "P-P-001-T-01").code == 1
    assert plan(dvault, "P-P-001").status.value == "aborted"


def test_ticket_approve_command_beside_a_daemon_applies_once(dvault, daemons):
    """The command and the daemon (woken by the ticket's change) both see the decision:
    it is applied once, and the plan is claimed once more."""
    ok = dvault.root / "fixed"
    write_plan(dvault, "P-P-001", [{"title": "needs a fix", "run": dvault.step(require=ok)}])
    d = daemons(tick=0.5)
    wait_for(settled(dvault, "P-P-001", "paused"), 10, "paused", diag=d.log)
    wait_ticket(dvault, "P-P-001")
    ok.touch()
    r = cli(dvault, "ticket", "approve", "P-P-001-T-01")
    assert r.code == 0, r.err
    wait_for(settled(dvault, "P-P-001", "completed"), 10, "completed", diag=d.log)
    wait_ticks(d, dvault, 2)
    assert len(events(dvault, "ticket_decided")) == 1
    assert [e["token"] for e in events(dvault, "claimed")] == [1, 2]


def test_on_failure_abort_and_continue(dvault, daemons):
    write_plan(dvault, "P-P-001", [{"title": "fails", "run": "exit 5", "on_failure": "abort"},
                                   {"title": "never", "run": "touch never"}])
    write_plan(dvault, "P-P-002", [{"title": "fails", "run": "exit 6", "retries": 1,
                                    "on_failure": "continue"},
                                   {"title": "runs", "run": "touch ran"}])
    d = daemons("--once")
    assert d.wait(15) == 0, d.log()
    failed = plan(dvault, "P-P-001")
    assert failed.status.value == "failed" and failed.current_index == 0
    assert failed.reflection_log[-1]["decision"] == "abort"
    assert "on_failure: abort" in failed.last_error
    assert not (dvault.root / "P" / "never").exists()
    cont = plan(dvault, "P-P-002")
    assert cont.status.value == "completed" and cont.current_index == 2
    assert [(e["attempt"], e["outcome"], e["decision"]) for e in cont.reflection_log] == [
        (1, "failed", "retry"), (2, "failed", "continue"), (1, "ok", "continue")]
    assert (dvault.root / "P" / "ran").exists()
    assert not list((dvault.root / "P").glob("tickets/*.md")), "abort and continue open no ticket"


BROKEN_TICKET = ("---\nid: P-P-001-T-01\nplan: [P-P-001\nseverity: warning\n"
                 "decision: approve\nstatus: open\n---\nMy notes.\n")


def test_broken_decided_ticket_is_reported_once_and_left_alone(dvault, daemons):
    write_plan(dvault, "P-P-001", [{"title": "fails", "run": "exit 4"}])
    d = daemons(tick=0.3)
    wait_for(settled(dvault, "P-P-001", "paused"), 10, "paused", diag=d.log)
    ticket = wait_ticket(dvault, "P-P-001")
    good = ticket.read_text().replace("decision: pending", "decision: approve")
    ticket.write_text(BROKEN_TICKET)
    past = time.time() - 60
    os.utime(ticket, (past, past))
    wait_for(lambda: events(dvault, "file_refused"), 5, "the ticket reported", diag=d.log)
    wait_ticks(d, dvault, 4)
    refused = events(dvault, "file_refused")
    assert len(refused) == 1 and refused[0]["path"] == "P/tickets/P-P-001-T-01.md"
    assert refused[0]["line"] is not None and "invalid YAML" in refused[0]["reason"]
    assert d.log().count("ERROR modulatio.refused: refused") == 1
    assert ticket.read_text() == BROKEN_TICKET
    assert plan(dvault, "P-P-001").status.value == "paused"
    save_like_vim(ticket, good)  # fixed: the decision is applied
    wait_for(lambda: events(dvault, "ticket_decided"), 5, "applied", diag=d.log)
    wait_for(lambda: len(events(dvault, "claimed")) == 2, 5, "claimed again", diag=d.log)

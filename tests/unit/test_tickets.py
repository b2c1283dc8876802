"""Tickets on their own (no daemon): opening, numbering, the cheap look, and the
memory that lets an idle tick skip every ticket it already read."""

from __future__ import annotations

from datetime import UTC, datetime

from modulatio_d.daemon.tickets import Memory, apply_decisions
from modulatio_d.store import tickets
from modulatio_d.store.events import EventLog
from modulatio_d.store.tickets import Severity, open_ticket, read_ticket

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _open(vault, n=1):
    return [open_ticket(vault, "P", "P-P-001", Severity.WARNING, "step 1 failed", "details",
                        {"current_index": 1, "rev": 3}, NOW) for _ in range(n)]


def test_tickets_are_numbered_per_plan_and_read_back(vault):
    ids = _open(vault, 2)
    assert ids == ["P-P-001-T-01", "P-P-001-T-02"]
    t = read_ticket(vault, vault.tickets_dir("P") / "P-P-001-T-02.md")
    assert (t.plan, t.severity, t.decision.value, t.open, t.reason) == \
        ("P-P-001", Severity.WARNING, "pending", True, "step 1 failed")
    assert t.created_at == NOW


def test_the_cheap_look_sees_only_open_decided_tickets():
    assert tickets.decided("---\ndecision: approve\nstatus: open\n---\n")
    assert tickets.decided("---\ndecision: decline\n---\n")
    assert not tickets.decided("---\ndecision: pending\nstatus: open\n---\n")
    assert not tickets.decided("---\ndecision: approve\nstatus: closed\n---\n")
    assert not tickets.decided("---\nstatus: open\n---\ndecision: approve\n")  # body, not a key


def test_an_idle_tick_reads_no_ticket_it_already_read(vault, monkeypatch):
    _open(vault, 3)
    log = EventLog(vault.events_path)
    memory = Memory(vault, log)
    reads = []
    real = type(vault).read
    monkeypatch.setattr(type(vault), "read", lambda self, p, **k: reads.append(p) or
                        real(self, p, **k))
    assert apply_decisions(vault, "P", log, NOW, memory) == []
    assert len(reads) == 3
    reads.clear()
    assert apply_decisions(vault, "P", log, NOW, memory) == []
    assert reads == []  # unchanged, nothing to apply: not even read
    path = vault.tickets_dir("P") / "P-P-001-T-02.md"
    path.write_text(path.read_text().replace("decision: pending", "decision: decline"))
    # decided: read again, applied (the plan is gone: closed with a note)
    assert apply_decisions(vault, "P", log, NOW, memory) == ["P-P-001-T-02"]
    assert [str(p) for p in reads if str(p) == str(path)]
    assert "status: closed" in path.read_text()


def test_a_decision_the_cheap_look_cannot_read_is_read_in_full(vault):
    _open(vault, 1)
    path = vault.tickets_dir("P") / "P-P-001-T-01.md"
    path.write_text(path.read_text().replace("decision: pending", "decision: >-\n  decline"))
    assert tickets.decided(path.read_text())
    log = EventLog(vault.events_path)
    assert apply_decisions(vault, "P", log, NOW, Memory(vault, log)) == ["P-P-001-T-01"]

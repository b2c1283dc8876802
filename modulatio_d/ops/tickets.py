"""What `modulatio ticket list|approve|decline` do, without argparse.

`decide` writes the person's decision into the ticket, then applies it at once
the way a daemon's tick would (daemon/tickets.apply_decisions, under the
ticket's lock), so the plan resumes or is aborted before the command returns.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from modulatio_d.core.errors import BadFile, TransitionRefused
from modulatio_d.daemon.tickets import apply_decisions
from modulatio_d.store.events import EventLog
from modulatio_d.store.tickets import Ticket, TicketDecision, read_ticket, write_decision
from modulatio_d.store.vault import Vault


def ticket_rows(vault: Vault, closed_too: bool = False) -> list[dict]:
    """Open tickets (every ticket with `closed_too`) as plain rows, oldest id first per
    project; a ticket that does not parse is a row with its `error`."""
    rows: list[dict] = []
    for project in vault.projects():
        for item in sorted(vault.files(project, "tickets"), key=lambda e: e.name):
            try:
                t = read_ticket(vault, Path(item.path))
            except BadFile as e:
                rows.append({"id": item.name[:-3], "project": project, "error": str(e)})
                continue
            if t.open or closed_too:
                rows.append({"id": t.id, "project": project, "plan": t.plan,
                             "severity": t.severity.value, "decision": t.decision.value,
                             "open": t.open, "reason": t.reason,
                             "created_at": t.created_at.isoformat() if t.created_at else None})
    return rows


def decide(vault: Vault, ticket_id: str, decision: TicketDecision, now: datetime,
           events: EventLog) -> Ticket:
    """Write `decision` into an open ticket and apply it; the ticket as decided."""
    _, path = vault.find("tickets", ticket_id)
    ticket = read_ticket(vault, path)
    if not ticket.open:
        raise TransitionRefused(ticket_id, "closed", f"ticket {decision.value}", ["open"])
    write_decision(path, decision)
    ticket = read_ticket(vault, path)
    apply_decisions(vault, vault.project_of(path), events, now)
    return ticket

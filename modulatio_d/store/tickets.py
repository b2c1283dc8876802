"""Ticket files: decisions a person must take about a paused plan.

`<PROJECT>/tickets/<plan-id>-T-<NN>.md` is opened by the daemon (open_ticket)
when a plan pauses for a failure, a step that must not re-run after a crash, or
the budget. A person sets `decision: approve` (the plan goes back to approved at
the same index) or `decline` (the plan is aborted), in the file or with
`modulatio ticket approve|decline`. Applying a decision is daemon/tickets.py:
under the flock of `<ticket-id>.lock` it changes the plan and closes the ticket
(`status: closed`, `applied_at`). Only those two keys and `decision` are ever
rewritten; the body is the person's to annotate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from modulatio_d.core import markdown, names, peek
from modulatio_d.core.times import parse_time
from modulatio_d.store import atomic
from modulatio_d.store.vault import Vault, create_numbered, decode, next_number


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class TicketDecision(StrEnum):
    PENDING = "pending"
    APPROVE = "approve"
    DECLINE = "decline"


@dataclass(frozen=True)
class Ticket:
    path: Path
    id: str
    plan: str
    severity: Severity
    reason: str
    decision: TicketDecision
    open: bool
    created_at: datetime | None


def read_ticket(vault: Vault, path: Path) -> Ticket:
    _, text = vault.read(path)
    doc = markdown.load(path, text)
    data, fail = doc.data, doc.fault()
    ticket_id = data.get("id", path.stem)
    if ticket_id != path.stem:
        fail(f"id {ticket_id!r} differs from the file name {path.stem!r}", "id")
    plan_id = data.get("plan")
    if not names.is_valid(plan_id):
        fail(f"plan {plan_id!r} is not a plan id", "plan")
    values = {}
    for key, enum, default in (("severity", Severity, "warning"),
                               ("decision", TicketDecision, "pending")):
        try:
            values[key] = enum(str(data.get(key, default)))
        except ValueError:
            fail(f"{key} {data.get(key)!r} is unknown", key,
                 "use one of " + ", ".join(e.value for e in enum))
    status = str(data.get("status", "open"))
    if status not in ("open", "closed"):
        fail(f"status {status!r} is unknown", "status", "use open or closed")
    return Ticket(path, ticket_id, plan_id, values["severity"], str(data.get("reason", "")),
                  values["decision"], status == "open", parse_time(data.get("created_at")))


def open_ticket(vault: Vault, project: str, plan_id: str, severity: Severity, reason: str,
                details: str, checkpoint: dict, now: datetime) -> str:
    folder = vault.tickets_dir(project)

    def text_for(ticket_id: str) -> str:
        keys = {"id": ticket_id, "plan": plan_id, "severity": severity.value, "reason": reason,
                "created_at": now, "checkpoint": checkpoint, "decision": "pending",
                "status": "open"}
        body = (f"\n## What happened\n\n{details.rstrip()}\n\n"
                f"## Checkpoint\n\nThe plan is paused at step "
                f"{_number(checkpoint.get('current_index'))} (`current_index: "
                f"{checkpoint.get('current_index')}`, rev {checkpoint.get('rev')}).\n\n"
                f"## What to decide\n\n"
                f"- `decision: approve` (or `modulatio ticket approve {ticket_id}`): the plan "
                f"goes back to approved and resumes at that step (to resume at another, set "
                f"`current_index` in the plan first: step N is `current_index: N-1`).\n"
                f"- `decision: decline` (or `modulatio ticket decline {ticket_id}`): the plan is "
                f"aborted.\n")
        return markdown.set_keys("---\n---\n", keys) + body

    ticket_id, _ = create_numbered(folder, f"{plan_id}-T-", 2,
                                   next_number(f"{plan_id}-T-", (folder,)), text_for)
    return ticket_id


def _number(index: object) -> object:
    """A 0-based index as people count steps."""
    return index + 1 if isinstance(index, int) else index


def write_decision(path: Path, decision: TicketDecision) -> None:
    """Set the `decision` line, that line only."""
    _rewrite(path, {"decision": decision.value})


def close_ticket(path: Path, now: datetime) -> None:
    """Mark the ticket applied: `status: closed` and `applied_at`."""
    _rewrite(path, {"status": "closed", "applied_at": now})


def _rewrite(path: Path, changes: dict) -> None:
    atomic.rewrite(path, lambda raw: markdown.set_keys(
        decode(path, raw), changes, path).encode(), kind="ticket")


def decided(text: str) -> bool:
    """Cheap look: maybe an open ticket with a decision taken (no YAML parse). A key
    the look cannot tell (`decision: >-` on two lines) counts as maybe: parse to know."""
    return peek.peek(text, "decision") in ("approve", "decline", peek.CANNOT_TELL) \
        and peek.peek(text, "status") in (None, "open", peek.CANNOT_TELL)

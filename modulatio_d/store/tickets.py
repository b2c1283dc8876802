"""Tickets: decisions a person must take about a paused plan.

`<PROJECT>/tickets/<plan-id>-T-<NN>.md` is opened by the daemon when a plan
pauses for a failure, a step that must not re-run after a crash, or the
budget. A person sets `decision: approve` (the plan goes back to approved at
the same index) or `decline` (the plan is aborted), in the file or with
`modulatio ticket approve|decline`. The next tick (or the command itself)
applies it and sets `status: closed` with `applied_at`, holding the flock of
`<ticket-id>.lock` beside it so that a decision is applied once however many
daemons and commands see it. Only those two keys and `decision` are ever
rewritten; the body is the person's to annotate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from modulatio_d.core import markdown, names
from modulatio_d.core.errors import BadFile, ModulatioError, TransitionRefused
from modulatio_d.ops.plans import change_status
from modulatio_d.store import atomic
from modulatio_d.store.events import EventLog
from modulatio_d.store.lock import FileLock, lock_path
from modulatio_d.store.refusals import Refusals, settled
from modulatio_d.store.vault import Vault, decode, next_number


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
    data = doc.data

    def fail(reason: str, key: str, hint: str = "") -> None:
        raise BadFile(path, reason, doc.line_of(key) or doc.head_line, hint)

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
                  values["decision"], status == "open", markdown.parse_time(data.get("created_at")))


def open_ticket(vault: Vault, project: str, plan_id: str, severity: Severity, reason: str,
                details: str, checkpoint: dict, now: datetime) -> str:
    folder = vault.tickets_dir(project)
    folder.mkdir(parents=True, exist_ok=True)
    number = next_number(f"{plan_id}-T-", (folder,))
    while True:
        ticket_id = f"{plan_id}-T-{number:02d}"
        keys = {"id": ticket_id, "plan": plan_id, "severity": severity.value, "reason": reason,
                "created_at": now, "checkpoint": checkpoint, "decision": "pending",
                "status": "open"}
        body = (f"\n## What happened\n\n{details.rstrip()}\n\n"
                f"## Checkpoint\n\nThe plan is paused at sub-objective "
                f"{checkpoint.get('current_index')} (rev {checkpoint.get('rev')}).\n\n"
                f"## What to decide\n\n"
                f"- `decision: approve` (or `modulatio ticket approve {ticket_id}`): the plan goes "
                f"back to approved and resumes at that sub-objective.\n"
                f"- `decision: decline` (or `modulatio ticket decline {ticket_id}`): the plan is "
                f"aborted.\n")
        text = markdown.set_keys("---\n---\n", keys) + body
        try:
            atomic.write_new(folder / f"{ticket_id}.md", text.encode())
            return ticket_id
        except FileExistsError:
            number += 1


def set_decision(vault: Vault, ticket_id: str, decision: TicketDecision) -> Ticket:
    _, path = vault.find("tickets", ticket_id)
    ticket = read_ticket(vault, path)
    if not ticket.open:
        raise TransitionRefused(ticket_id, "closed", f"ticket {decision.value}", ["open"])
    _rewrite(path, {"decision": decision.value})
    return read_ticket(vault, path)


def _rewrite(path: Path, changes: dict) -> None:
    atomic.rewrite(path, lambda raw: markdown.set_keys(
        decode(path, raw), changes, path).encode())


def decided(text: str) -> bool:
    """Cheap look: an open ticket with a decision taken (no YAML parse)."""
    return markdown.peek(text, "decision") in ("approve", "decline") and \
        markdown.peek(text, "status") in (None, "open")


class Memory:
    """What a daemon keeps between ticks about the tickets: which files it found
    with nothing to apply (by stat signature, so an idle tick reads none of them)
    and which bad ones it already told about."""

    def __init__(self, vault: Vault, log: EventLog):
        self.quiet: dict[str, tuple] = {}
        self.refusals = Refusals(vault, log, "ticket")


def apply_decisions(vault: Vault, project: str, log: EventLog, now: datetime,
                    memory: Memory | None = None) -> list[str]:
    """Apply every open ticket of `project` whose decision was taken; their ids.

    A decided ticket that does not parse is skipped and, when the caller keeps a
    `memory` across ticks (the daemon does), told once per problem.
    """
    applied = []
    for entry in sorted(vault.files(project, "tickets"), key=lambda e: e.name):
        path = Path(entry.path)
        try:
            sig = atomic.signature(entry.stat())
            if memory is not None and memory.quiet.get(entry.path) == sig:
                continue  # unchanged since it had nothing to apply
            if not decided(vault.read(path)[1]):
                if memory is not None:
                    memory.quiet[entry.path] = sig
                continue
            ticket = read_ticket(vault, path)
        except BadFile as e:  # a ticket never stops a tick; say why its decision waits
            if memory is not None and settled(path, now.timestamp()):
                memory.refusals.tell(path, project, e, str(e))
            continue
        except OSError:
            continue
        if not ticket.open or ticket.decision is TicketDecision.PENDING:
            continue
        if _apply(vault, project, path, log, now):
            applied.append(ticket.id)
    return applied


def _apply(vault: Vault, project: str, path: Path, log: EventLog, now: datetime) -> bool:
    """Apply one decided ticket under its `.lock`, so that a daemon and a `modulatio
    ticket` command (or two daemons) never both apply it; False when not applied here."""
    lock = FileLock(lock_path(path))
    try:
        if not lock.try_acquire():
            return False  # another process is applying it
    except BadFile:
        return False
    with lock:
        try:
            ticket = read_ticket(vault, path)  # again, under the lock: applied meanwhile?
        except (BadFile, OSError):
            return False
        if not ticket.open or ticket.decision is TicketDecision.PENDING:
            return False
        action = "resume" if ticket.decision is TicketDecision.APPROVE else "abort"
        note = ""
        try:
            change_status(vault, ticket.plan, action, now, log)
        except ModulatioError as e:  # not paused any more, gone, or unreadable
            note = str(e)
        _rewrite(path, {"status": "closed", "applied_at": now})
        log("ticket_decided", project=project, ticket=ticket.id, plan=ticket.plan,
            decision=ticket.decision.value, **({"note": note} if note else {}))
    return True

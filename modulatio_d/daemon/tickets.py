"""Applying the decisions people took on tickets, exactly once.

Each tick (and `modulatio ticket approve|decline` at once) looks for open
tickets whose `decision` is approve or decline (a regex on the file first,
store/tickets.decided). One is applied under the flock of `<ticket-id>.lock`
beside it, so a decision is applied once however many daemons and commands see
it: under the lock the ticket is read again, the plan is resumed (approve) or
aborted (decline) with store/plan_file.change_status, and the ticket is closed
(`status: closed`, `applied_at`). A plan that is no longer paused, or is gone,
still closes the ticket, with a `note` in the `ticket_decided` event. A
daemon applies no ticket that fails the trust checks (store/trust.py), nor
any in a tickets/ or project folder that fails them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from modulatio_d.core.errors import BadFile, ModulatioError
from modulatio_d.store import atomic
from modulatio_d.store.events import EventLog
from modulatio_d.store.lock import FileLock, lock_path
from modulatio_d.store.plan_file import change_status
from modulatio_d.store.refusals import Refusals, settled
from modulatio_d.store.tickets import TicketDecision, close_ticket, decided, read_ticket
from modulatio_d.store.trust import Checks
from modulatio_d.store.vault import Vault


class Memory:
    """What a daemon keeps between ticks about the tickets: which files it found
    with nothing to apply (by stat signature, so an idle tick reads none of them)
    and which bad ones it already told about."""

    def __init__(self, vault: Vault, log: EventLog):
        self.quiet: dict[str, tuple] = {}
        self.refusals = Refusals(vault, log, "ticket")


def apply_decisions(vault: Vault, project: str, log: EventLog, now: datetime,
                    memory: Memory | None = None, trust: Checks | None = None) -> list[str]:
    """Apply every open ticket of `project` whose decision was taken; their ids.

    A decided ticket that does not parse is skipped and, when the caller keeps a
    `memory` across ticks (the daemon does), told once per problem.
    """
    applied = []
    if trust is not None and not (trust.folder_ok(vault.project_dir(project), project)
                                  and trust.folder_ok(vault.tickets_dir(project), project)):
        return applied
    for item in sorted(vault.files(project, "tickets"), key=lambda e: e.name):
        path = Path(item.path)
        try:
            st = item.stat()
            sig = atomic.signature(st)
            if memory is not None and memory.quiet.get(item.path) == sig:
                continue  # unchanged since it had nothing to apply
            if not decided(vault.read(path)[1]):
                if memory is not None:
                    memory.quiet[item.path] = sig
                continue
            untrusted = trust.file_problem(path, st) if trust is not None else None
            if untrusted is not None:  # a decision is acted on: who could have taken it?
                if memory is not None:
                    memory.refusals.tell(path, project, untrusted, (sig, trust.generation))
                continue
            ticket = read_ticket(vault, path)
        except BadFile as e:  # a ticket never stops a tick; say why its decision waits
            if memory is not None and settled(path, now.timestamp()):
                memory.refusals.tell(path, project, e, str(e))
            continue
        except OSError:
            continue
        if not ticket.open or ticket.decision is TicketDecision.PENDING:
            if memory is not None:
                memory.quiet[item.path] = sig
            continue
        try:
            if _apply(vault, project, path, log, now):
                applied.append(ticket.id)
        except Exception as e:  # noqa: BLE001 (in a daemon, one ticket costs itself)
            if memory is None:
                raise
            memory.quiet[item.path] = sig  # not tried again until the file changes
            memory.refusals.tell(path, project, BadFile(
                path, f"applying it raised {type(e).__name__}: {e}; fix the ticket or report "
                      f"the bug"), sig)
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
        close_ticket(path, now)
        log("ticket_decided", project=project, ticket=ticket.id, plan=ticket.plan,
            decision=ticket.decision.value, **({"note": note} if note else {}))
    return True

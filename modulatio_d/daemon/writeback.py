"""Writing a running plan back: patient writes, pauses with a ticket, status events.

Every write of a run goes through `PlanWriter.write` (HeldPlan.update: only
the daemon's keys are spliced in, over whatever a person saved). When it
fails, `WriteRetry` says whether to try again after a beat (the heartbeat
goes on meanwhile, the plan stays locked) or to give up, which raises: the
daemon then lets the plan go and holds off from it rather than dying.
- The plan file missing: an editor between its rename and its write, for
  milliseconds. Missing for longer than SETTLE_S, it was deleted or moved
  away: give up.
- A person's save that does not parse (BadFile): waited out for as long as
  it takes, never written over; told once, once the file has settled.
- Any other failure (disk full, permissions, a file saved again and again
  under the write): tried again for WRITE_RETRY_TICKS ticks, then give up.
- A stop request (SIGTERM): give up at once.

A pause writes its ticket first, then the plan: a crash in between leaves a
ticket too many (closed with a note once decided), never a paused plan that
nobody is asked about.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from modulatio_d.core.errors import BadFile, FileChanged
from modulatio_d.core.plan import Plan, PlanStatus
from modulatio_d.daemon.services import Services
from modulatio_d.store import tickets
from modulatio_d.store.plan_file import HeldPlan
from modulatio_d.store.refusals import Refusals, settled
from modulatio_d.store.vault import SETTLE_S

log = logging.getLogger("modulatio.runner")
WRITE_RETRY_TICKS = 4  # a plan write failing this long (disk full): let the plan go


class WriteRetry:
    """The patience of one write: `again(error)` after each failure says whether to retry."""

    def __init__(self, patience_s: float, monotonic: Callable[[], float],
                 gone_s: float = SETTLE_S):
        self.patience_s = patience_s
        self.gone_s = gone_s
        self.monotonic = monotonic
        self.gone_since: float | None = None
        self.failing_since: float | None = None

    def again(self, error: Exception) -> bool:
        now = self.monotonic()
        # A link or an odd file in the way (store/fs/ Refused, an OSError too) is no save
        # a person is making: it gets the patience of a failing write, not forever.
        if isinstance(error, BadFile) and not isinstance(error, OSError):
            self.gone_since = None  # it is back, if broken: a person is at it
            return True
        if isinstance(error, FileNotFoundError):
            if self.gone_since is None:
                self.gone_since = now
            return now - self.gone_since <= self.gone_s
        if self.failing_since is None:
            self.failing_since = now
        return now - self.failing_since <= self.patience_s


class PlanWriter:
    """The running plan as the runner writes it; `plan` is always the latest seen."""

    def __init__(self, held: HeldPlan, svc: Services):
        self.held = held
        self.svc = svc
        self.refusals = Refusals(held.vault, svc.events, "plan")

    @property
    def plan(self) -> Plan:
        return self.held.plan

    def refresh(self) -> None:
        try:
            self.held.refresh()
        except BadFile as e:
            self.report_bad(e)
        except OSError as e:  # the mount cut off (ENOTCONN, EIO): look again at the next beat
            log.warning("cannot read %s now, looking again later: %s", self.held.path, e)

    def write(self, changes: dict) -> Plan:
        """held.update, waiting out a person's broken save rather than overwriting it."""
        retry = WriteRetry(WRITE_RETRY_TICKS * self.svc.tick_seconds, self.svc.clocks.monotonic)
        while True:
            try:
                return self.held.update(changes)
            except (OSError, FileChanged, BadFile) as e:
                if isinstance(e, (BadFile, FileNotFoundError)):
                    self.report_bad(e)
                elif retry.failing_since is None:
                    log.error("cannot write %s, trying again: %s", self.held.path, e)
                if self.svc.stop.requested or not retry.again(e):
                    raise
                self.svc.periodic(self.plan, None)
                self.svc.waker.wait(self.svc.beat_interval())

    def patiently(self, action: Callable[[], None], what: str) -> bool:
        """Run `action` (a write other than the plan's: the usage append) with the patience
        of a plan write; False when it still fails then, or when a stop is asked."""
        retry = WriteRetry(WRITE_RETRY_TICKS * self.svc.tick_seconds, self.svc.clocks.monotonic)
        while True:
            try:
                action()
                return True
            except OSError as e:
                if retry.failing_since is None:
                    log.error("cannot write %s, trying again: %s", what, e)
                if self.svc.stop.requested or not retry.again(e):
                    return False
                self.svc.periodic(self.plan, None)
                self.svc.waker.wait(self.svc.beat_interval())

    def pause(self, changes: dict, severity: tickets.Severity, reason: str,
              details: str) -> None:
        """Pause with a ticket (the ticket first, see above)."""
        plan = self.plan
        ticket_id = tickets.open_ticket(
            self.held.vault, self.held.project, plan.id, severity, reason, details,
            {"current_index": plan.current_index, "rev": plan.rev + 1}, self.svc.clocks.wall())
        self.svc.events("ticket_opened", project=self.held.project, plan=plan.id,
                        ticket=ticket_id, severity=severity.value, reason=reason)
        self.write({**changes, "status": PlanStatus.PAUSED.value, "last_error": reason})
        self.status_event(PlanStatus.EXECUTING, PlanStatus.PAUSED, reason)

    def fail_closed(self, plan: Plan) -> None:
        """A Modulatio-shaped plan whose Sub-objectives do not parse: paused for revision
        with a ticket rather than run as a shorter list (core/modulatio_shape.py)."""
        shape = plan.shape
        where = f" (line {shape.body_error_line})" if shape and shape.body_error_line else ""
        reason = f"sub-objectives do not parse{where}: {shape.body_error if shape else ''}"
        self.pause({}, tickets.Severity.CRITICAL, reason,
                   f"{reason}\n\nFix the Sub-objectives section of {plan.path.name} "
                   "(numbered bold items '**1. Title** — description'), then approve it.")

    def status_event(self, before: PlanStatus, after: PlanStatus,
                     reason: str | None = None) -> None:
        self.svc.events("status_changed", project=self.held.project, plan=self.plan.id,
                        previous=before.value, status=after.value, by="daemon",
                        **({"reason": reason} if reason else {}))

    def report_bad(self, error: Exception) -> None:
        """Tell once per problem that the plan cannot be written back (it waits for a fix)."""
        path = self.held.path
        if isinstance(error, BadFile):
            if not settled(path, self.svc.clocks.wall().timestamp()):
                return  # maybe an editor half way through its save: judge it once settled
        else:
            error = BadFile(path, "is gone: deleted or moved away while it ran")
        self.refusals.tell(path, self.held.project, error, str(error))

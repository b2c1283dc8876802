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
- Kept through: an error a network filesystem's client makes for a while
  (`ESTALE`, `ENOTCONN`, `EIO`; and `ENOENT` for a plan whose name its folder
  still lists: the file is there, the client's lookup is not) is waited out
  for as long as it lasts, while the plan is still ours: `loss()` (the runner's)
  says it is not, when our lock file was deleted or replaced or the plan names a
  higher claim token. GlusterFS with its default volume options gave such errors
  for up to ~15 s; giving up then freed the lock of a plan left `executing`, and
  another host ran the step again as an orphan's. Told once per wait (a warning
  and `write_waiting`); a stop request still ends the wait. A plan a person
  deleted is told apart by its folder's listing: its name is gone from it, and
  after SETTLE_S it is given up as before.

A pause writes its ticket first, then the plan: a crash in between leaves a
ticket too many (closed with a note once decided), never a paused plan that
nobody is asked about.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from pathlib import Path

from modulatio_d.core import schedule
from modulatio_d.core.errors import BadFile, FileChanged
from modulatio_d.core.plan import Plan, PlanStatus, SubObjective
from modulatio_d.core.times import format_time
from modulatio_d.core.verdict import FAILURES
from modulatio_d.daemon.services import Services
from modulatio_d.daemon.story import write_held
from modulatio_d.store import fs, reflections, tickets
from modulatio_d.store.plan_file import HeldPlan
from modulatio_d.store.refusals import Refusals, settled
from modulatio_d.store.vault import SETTLE_S

log = logging.getLogger("modulatio.runner")
WRITE_RETRY_TICKS = 4  # a plan write failing this long (disk full): let the plan go
PASSING_ERRNOS = (errno.ESTALE, errno.ENOTCONN, errno.EIO)  # a network client's, for a while
STILL_WAITING_S = 60.0  # a wait kept through transient errors is told again this often


def listed(path: Path) -> bool:
    """Whether `path`'s folder lists its name; True when the folder cannot be listed now
    (the same client's error: it says nothing about the file)."""
    try:
        return path.name in fs.names(path.parent)
    except OSError:
        return True


def passing(error: Exception, path: Path | None) -> bool:
    """Whether `error` is one a network filesystem's client makes for a while, the file
    being there (see above); `path`: the file whose missing is judged by its listing."""
    if isinstance(error, FileNotFoundError):
        return path is not None and listed(path)
    return isinstance(error, OSError) and not isinstance(error, BadFile) \
        and error.errno in PASSING_ERRNOS


class WriteRetry:
    """The patience of one write: `again(error)` after each failure says whether to retry."""

    def __init__(self, patience_s: float, monotonic: Callable[[], float],
                 gone_s: float = SETTLE_S, keep: Callable[[Exception], bool] | None = None):
        self.patience_s = patience_s
        self.gone_s = gone_s
        self.monotonic = monotonic
        self.keep = keep or (lambda error: False)
        self.gone_since: float | None = None
        self.failing_since: float | None = None
        self.kept_since: float | None = None  # waiting out a passing error (see above)

    def again(self, error: Exception) -> bool:
        now = self.monotonic()
        if self.keep(error):
            if self.kept_since is None:
                self.kept_since = now
            self.gone_since = self.failing_since = None  # its own patience, after it
            return True
        self.kept_since = None
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

    def __init__(self, held: HeldPlan, svc: Services,
                 lock_lost: Callable[[], str | None] = lambda: None):
        self.held = held
        self.svc = svc
        self.lock_lost = lock_lost  # how our lock file was lost (None: it was not): runner's
        self.refusals = Refusals(held.vault, svc.events, "plan")
        self._told_at: float | None = None  # when a kept wait was last told
        held.window = svc.config.reflection_window

    def _retry(self, path: Path | None, what: str) -> WriteRetry:
        """The patience of one write of `what` (`path`: the file judged by its listing)."""
        def keep(error: Exception) -> bool:
            if not passing(error, path):
                return False
            lost = self.loss()
            if lost is not None:  # a stale handle is no longer worth waiting for
                log.error("cannot write %s (%s), and the plan is no longer ours (%s): "
                          "letting it go", what, error, lost)
                return False
            now = self.svc.clocks.monotonic()
            if self._told_at is None or now - self._told_at >= STILL_WAITING_S:
                first = self._told_at is None
                self._told_at = now
                log.warning("cannot write %s now (%s); the plan's lock is still ours: "
                            "waiting until it can be written%s", what, error,
                            "" if first else " (still)")
                self.svc.events("write_waiting", project=self.held.project,
                                plan=self.plan.id, file=what, error=str(error))
            return True
        return WriteRetry(WRITE_RETRY_TICKS * self.svc.tick_seconds, self.svc.clocks.monotonic,
                          keep=keep)

    def loss(self) -> str | None:
        """How the plan stopped being ours: our lock file deleted or replaced, or a higher
        claim token in the plan as read now (not readable now: as last read)."""
        how = self.lock_lost()
        if how is not None:
            return f"its lock file was {how}"
        self.refresh()
        theirs = self.held.fenced_by()
        return None if theirs is None else f"claimed with token {theirs} over ours"

    def _done_waiting(self, retry: WriteRetry, what: str) -> None:
        if retry.kept_since is not None:
            log.warning("wrote %s after waiting %.1f s", what,
                        self.svc.clocks.monotonic() - retry.kept_since)
        self._told_at = None

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
        retry = self._retry(self.held.path, str(self.held.path))
        while True:
            try:
                plan = self.held.update(changes)
                self._done_waiting(retry, str(self.held.path))
                return plan
            except (OSError, FileChanged, BadFile) as e:
                if isinstance(e, (BadFile, FileNotFoundError)) \
                        and not passing(e, self.held.path):
                    self.report_bad(e)
                elif retry.failing_since is None and retry.kept_since is None:
                    log.error("cannot write %s, trying again: %s", self.held.path, e)
                if self.svc.stop.requested or not retry.again(e):
                    raise
                self._before_wait()

    def patiently(self, action: Callable[[], None], what: str) -> bool:
        """Run `action` (a write other than the plan's: the usage append) with the patience
        of a plan write; False when it still fails then, or when a stop is asked."""
        retry = self._retry(None, what)
        while True:
            try:
                action()
                self._done_waiting(retry, what)
                return True
            except OSError as e:
                if retry.failing_since is None and retry.kept_since is None:
                    log.error("cannot write %s, trying again: %s", what, e)
                if self.svc.stop.requested or not retry.again(e):
                    return False
                self._before_wait()

    def _before_wait(self) -> None:
        """A beat, the events held for one append written now (story.together), a wait."""
        write_held(self.svc.events)
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

    def tail(self, index: int) -> list[dict]:
        """The reflection entries of the latest run of step `index` (its attempts so far),
        newest first; read on into the moved entries when they fill the whole window."""
        plan, tail = self.plan, []
        for e in reversed(plan.reflection_log):
            if e.get("index") != index:
                return tail
            tail.append(e)
        try:  # a step retried past the window: rare, and read once an attempt
            earlier = reflections.read(self.held.path, plan.archived)
        except (BadFile, OSError) as e:
            log.warning("plan %s: attempts before the window not counted: %s", plan.id, e)
            earlier = []
        for e in reversed(earlier):
            if e.get("index") != index:
                break
            tail.append(e)
        return tail

    def failures(self, step: SubObjective, tail: list[dict], token: int, failed: bool) -> int:
        """Failed attempts of `step` so far: this one, those of this claim in `tail`, and
        those counted before the plan was released to retry it (`retry_wait`)."""
        retry = self.plan.retry_wait or {}
        before = retry.get("failures", 0) if retry.get("index") == step.index else 0
        return before + int(failed) + sum(1 for e in tail if e.get("token") == token
                                          and e.get("outcome") in FAILURES)

    def retry_later(self, step: SubObjective, failures: int, changes: dict,
                    retrying: bool) -> None:
        """Clear a `retry_wait` done with; when `retrying` a step with `retry_delay`, add
        to `changes` the release of the plan (core/schedule.py): `approved`, no claim,
        `retry_wait` {index, failures, at}; the scan offers it again from `at`."""
        if self.plan.retry_wait is not None:
            changes["retry_wait"] = None
        if not retrying or step.retry_delay is None:
            return
        at = schedule.retry_at(self.svc.clocks.wall(), step.retry_delay, failures,
                               f"{self.plan.id}#{step.index}")
        changes.update({"retry_wait": {"index": step.index, "failures": failures, "at": at},
                        "status": PlanStatus.APPROVED.value, "claim": None})
        self.svc.events("retry_scheduled", project=self.held.project, plan=self.plan.id,
                        index=step.index, failures=failures, at=format_time(at))

    def expire_if_due(self) -> bool:
        """Fail a plan no step of which started before its expires_at (`expired`)."""
        plan, now = self.plan, self.svc.clocks.wall()
        at = plan.schedule.expires_at
        flight = plan.in_flight or {}  # the claim may write its first step ahead: not started
        started = plan.reflection_log or (flight and flight.get("token") != self.held.token)
        if at is None or started or now < at:
            return False
        reason = f"expired: not started by expires_at {format_time(at)}"
        self.write({"status": PlanStatus.FAILED.value, "last_error": reason, "claim": None,
                    "in_flight": None})
        self.status_event(PlanStatus.EXECUTING, PlanStatus.FAILED, "expired")
        return True

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

"""One claimed plan: run its sub-objectives from current_index, write back, stop.

The caller holds the plan's lock for the whole call. For each attempt:
1. write `in_flight` {index, attempt, token, started_at} (found on resume, it
   means the attempt may have run partly: it runs again, or the plan pauses
   with a ticket when the step says `rerun_after_crash: false`);
2. start the step's child (child.py) and wait on its exit, the wake-up pipe
   and the clock: a person's abort kills its process group now, a pause lets
   it finish, a timeout kills it, a stop request (SIGTERM) kills it and leaves
   the plan `executing` at the same index with `in_flight` set;
3. fold the attempt's usage into `<plan-id>.usage.jsonl`, ask the reflector,
   and write one update: reflection_log entry, in_flight cleared, and the
   decision's current_index or status. Pausing opens a ticket.
The run ends when the plan is completed, failed, paused or aborted, or when
the daemon is asked to stop.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from modulatio_d.core.errors import BadFile, FileChanged
from modulatio_d.core.plan import Plan, PlanStatus, SubObjective
from modulatio_d.core.times import format_time, parse_time
from modulatio_d.daemon import reflect
from modulatio_d.daemon.child import Child, describe_status
from modulatio_d.daemon.executors import StepContext, StepError, launch
from modulatio_d.daemon.reflect import Decision, Outcome
from modulatio_d.daemon.wake import Waker
from modulatio_d.store import tickets, usage
from modulatio_d.store.config import Config
from modulatio_d.store.lock import FileLock
from modulatio_d.store.plan_file import HeldPlan
from modulatio_d.store.refusals import Refusals, settled
from modulatio_d.store.vault import SETTLE_S

log = logging.getLogger("modulatio.runner")
budget_log = logging.getLogger("modulatio.context_budget")
KILL_GRACE_S = 5.0
WRITE_RETRY_TICKS = 4  # a plan write failing this long (disk full): let the plan go
SUMMARY_CHARS = 200


@dataclass
class Stop:
    """Set by the daemon's signal handlers: 1 = stop the step and exit, 2 = at once."""

    requested: int = 0


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    exit: str
    started: datetime
    ended: datetime
    log_path: Path
    summary: str


class Runner:
    def __init__(self, held: HeldPlan, lock: FileLock, token: int, config: Config,
                 events: Callable[..., None], waker: Waker, stop: Stop,
                 clock: Callable[[], datetime],
                 periodic: Callable[[Plan | None, SubObjective | None], None],
                 base_env: dict[str, str], tick_seconds: float):
        self.held = held
        self.lock = lock
        self.token = token
        self.config = config
        self.events = events
        self.waker = waker
        self.stop = stop
        self.clock = clock
        self.periodic = periodic
        self.base_env = base_env
        self.tick_seconds = tick_seconds
        self.plan_path = held.path
        self.usage_path = usage.usage_path(held.path)
        self.runs_dir = held.path.with_suffix(".runs")
        self.totals = usage.totals(self.usage_path)
        self.warned: set[str] = set()
        self.refusals = Refusals(held.vault, events, "plan")
        self._prewritten: tuple[int, int] | None = None  # (index, attempt) written ahead

    @property
    def plan(self) -> Plan:
        return self.held.plan

    def run(self) -> None:
        if self.plan.in_flight:
            self._resume_interrupted()
        while True:
            if self.stop.requested:
                self._drop_unstarted()
                return
            self._refresh()
            plan = self.plan
            if plan.status is not PlanStatus.EXECUTING:
                log.info("plan %s is %s: stopping", plan.id, plan.status.value)
                self._drop_unstarted()
                return
            if plan.current_index >= plan.total:
                self._write({"status": PlanStatus.COMPLETED.value, "completed_at": self.clock(),
                             "in_flight": None, "last_error": None})
                self._status_event(PlanStatus.EXECUTING, PlanStatus.COMPLETED)
                return
            if self._over_budget():
                return
            self._run_step(plan.sub_objectives[plan.current_index])

    # --- one attempt ------------------------------------------------------------

    def _run_step(self, step: SubObjective) -> None:
        tail = self._tail(step.index)
        attempt_no = len(tail) + 1
        started = self.clock()
        if self._prewritten != (step.index, attempt_no):
            self._write({"in_flight": self._in_flight(step.index, attempt_no, started)})
        self._prewritten = None
        self.events("step_started", project=self.held.project, plan=self.plan.id,
                    index=step.index, attempt=attempt_no, title=step.title)
        log.info("plan %s step %d attempt %d: %s", self.plan.id, step.index, attempt_no,
                 step.title)
        self.periodic(self.plan, step)
        attempt = self._attempt(step, attempt_no, started)
        if attempt.outcome is Outcome.INTERRUPTED:
            log.info("plan %s step %d stopped by shutdown; left in flight", self.plan.id,
                     step.index)
            return
        self._fold_usage(step, attempt_no, attempt)
        failures = sum(1 for e in tail if e.get("token") == self.token
                       and e.get("outcome") in reflect.FAILURES) \
            + (attempt.outcome in reflect.FAILURES)
        if attempt.outcome is Outcome.ABORTED:
            verdict = reflect.Verdict(Decision.ABORT, "aborted by a person")
        else:
            verdict = reflect.decide(self.plan.reflector or self.config.reflector, step,
                                     attempt.outcome, failures,
                                     self._entry(step, attempt_no, attempt, None),
                                     str(self.plan_path.parent), self.base_env)
        self._record(step, attempt_no, attempt, verdict)

    def _attempt(self, step: SubObjective, attempt_no: int, started: datetime) -> Attempt:
        log_path = self.runs_dir / f"{step.index}-{attempt_no}.log"
        scratch = self.runs_dir / f"{step.index}-{attempt_no}.usage.jsonl"
        ctx = StepContext(self.held.vault.root, self.held.project, self.plan, step, attempt_no,
                          self.token, scratch, self.config, self.base_env)
        t0 = time.monotonic()
        try:
            self.runs_dir.mkdir(exist_ok=True)
            # An earlier run of this step (before a person rewound current_index) may
            # have left usage here: it was counted then, it must not count again.
            scratch.unlink(missing_ok=True)
            child = Child(launch(ctx), log_path, keep_fds=(self.lock.fd,))
        except (StepError, OSError) as e:
            try:
                with open(log_path, "a") as f:
                    f.write(f"modulatio: could not start the step: {e}\n")
            except OSError:
                pass  # no log to write to: the reflection_log entry carries the reason
            return Attempt(Outcome.ERROR, "not started", started, self.clock(), log_path, str(e))
        timeout = step.timeout or self.config.default_timeout
        outcome = None
        try:
            while child.poll() is None:
                left = timeout - (time.monotonic() - t0)
                if left <= 0:
                    outcome = Outcome.TIMEOUT
                    child.stop(KILL_GRACE_S, self._hurry)
                    break
                self.waker.wait(min(left, self._beat_interval()),
                                (child.wait_fd(),) if child.wait_fd() is not None else ())
                if child.poll() is not None:
                    break
                if self.stop.requested:
                    outcome = Outcome.INTERRUPTED
                    child.stop(KILL_GRACE_S, self._hurry)
                    break
                self.periodic(self.plan, step)
                self._refresh()
                if self.plan.status is PlanStatus.ABORTED:
                    outcome = Outcome.ABORTED
                    child.stop(KILL_GRACE_S, self._hurry)
                    break
            code = child.proc.wait()
            child.kill_group(signal.SIGKILL)  # what the step left running in its group goes with it
        finally:
            child.close()
        if outcome is None:
            outcome = Outcome.OK if code == 0 else Outcome.FAILED
        exit_text = describe_status(code)
        if outcome is Outcome.TIMEOUT:
            exit_text = f"timed out after {timeout:g}s ({exit_text})"
        return Attempt(outcome, exit_text, started, self.clock(), log_path, _summary(log_path))

    def _hurry(self) -> bool:
        return self.stop.requested > 1  # a second signal: no more grace for the step

    def _beat_interval(self) -> float:
        return max(0.5, min(15.0, self.tick_seconds / 2))

    # --- after an attempt ---------------------------------------------------------

    def _record(self, step: SubObjective, attempt_no: int, attempt: Attempt,
                verdict: reflect.Verdict) -> None:
        entry = self._entry(step, attempt_no, attempt, verdict)
        changes: dict[str, object] = {"reflection_log": [*self.plan.reflection_log, entry],
                                      "in_flight": None}
        executing = self.plan.status is PlanStatus.EXECUTING
        d = verdict.decision
        if d is Decision.CONTINUE:
            changes["current_index"] = step.index + 1
            changes["last_error"] = None
            self._prewrite_next(changes, step.index + 1)
        elif d is not Decision.RETRY:
            changes["last_error"] = f"step {step.index} ({step.title}): {verdict.reason}; " \
                                    f"last attempt: {attempt.exit}"
            if executing and d is Decision.ABORT:
                changes["status"] = PlanStatus.FAILED.value
        self.events("step_ended", project=self.held.project, plan=self.plan.id,
                    index=step.index, attempt=attempt_no, outcome=attempt.outcome.value,
                    exit=attempt.exit, decision=d.value,
                    duration_s=entry["duration_s"])
        if executing and d in (Decision.PAUSE, Decision.REVISE_MAJOR):
            severity = tickets.Severity.CRITICAL if d is Decision.REVISE_MAJOR \
                else tickets.Severity.WARNING
            self._pause(changes, severity, str(changes["last_error"]),
                        f"Sub-objective {step.index} ({step.title}) ended with "
                        f"{attempt.outcome} ({attempt.exit}) on attempt {attempt_no}.\n\n"
                        f"Reflector: {verdict.reason}.\n\nLog: {attempt.log_path}\n\n"
                        f"Last output: {attempt.summary}")
            return
        before = self.plan.status
        plan = self._write(changes)
        if plan.status is not before:
            self._status_event(before, plan.status)

    def _in_flight(self, index: int, attempt_no: int, at: datetime) -> dict:
        return {"index": index, "attempt": attempt_no, "token": self.token, "started_at": at}

    def _prewrite_next(self, changes: dict, index: int) -> None:
        """Record the next step as in flight in the same write that ends this one.

        One durable write a step instead of two. Only when the next step will start
        right away: the plan runs on, no stop is asked, the budget has room, and the
        step may re-run after a crash (a crash between this write and its start
        makes it look interrupted, which must not pause a rerun_after_crash: false
        step that never ran). If the plan stops first, _drop_unstarted clears it.
        """
        plan = self.plan
        if index >= plan.total or self.stop.requested or plan.status is not PlanStatus.EXECUTING \
                or not plan.sub_objectives[index].rerun_after_crash \
                or any(used > limit for _, used, limit in self._spent(changes["reflection_log"])):
            return
        changes["in_flight"] = self._in_flight(index, 1, self.clock())
        self._prewritten = (index, 1)

    def _drop_unstarted(self) -> None:
        """Clear an in_flight record written ahead for a step that never started."""
        if self._prewritten is not None:
            self._prewritten = None
            self._write({"in_flight": None})

    def _entry(self, step: SubObjective, attempt_no: int, attempt: Attempt,
               verdict: reflect.Verdict | None) -> dict:
        entry = {"index": step.index, "title": step.title, "attempt": attempt_no,
                 "outcome": attempt.outcome.value, "exit": attempt.exit,
                 "started_at": format_time(attempt.started), "ended_at": format_time(attempt.ended),
                 "duration_s": round((attempt.ended - attempt.started).total_seconds(), 3),
                 "decision": verdict.decision.value if verdict else None,
                 "summary": attempt.summary,
                 "log": str(attempt.log_path.relative_to(self.plan_path.parent)),
                 "token": self.token}
        return entry

    def _tail(self, index: int) -> list[dict]:
        """The reflection entries of the latest run of step `index` (its attempts so far)."""
        tail = []
        for e in reversed(self.plan.reflection_log):
            if e.get("index") != index:
                break
            tail.append(e)
        return tail

    def _resume_interrupted(self) -> None:
        """The last attempt was in flight when its daemon stopped or died."""
        f = self.plan.in_flight or {}
        index = f.get("index", self.plan.current_index)
        if index != self.plan.current_index or index >= self.plan.total:
            self._write({"in_flight": None})  # a person moved current_index since: theirs wins
            return
        step = self.plan.sub_objectives[index]
        now = self.clock()
        started = parse_time(f.get("started_at")) or now
        rerun = step.rerun_after_crash
        entry = {"index": index, "title": step.title, "attempt": f.get("attempt", 1),
                 "outcome": Outcome.INTERRUPTED.value, "exit": "daemon stopped or died",
                 "started_at": format_time(started), "ended_at": format_time(now),
                 "duration_s": round((now - started).total_seconds(), 3),
                 "decision": Decision.RETRY.value if rerun else Decision.PAUSE.value,
                 "summary": "", "log": f"{self.runs_dir.name}/{index}-{f.get('attempt', 1)}.log",
                 "token": f.get("token")}
        self.events("orphan_step", project=self.held.project, plan=self.plan.id, index=index,
                    attempt=f.get("attempt"), rerun=rerun)
        changes: dict[str, object] = {"reflection_log": [*self.plan.reflection_log, entry],
                                      "in_flight": None}
        if not rerun:
            reason = (f"step {index} ({step.title}) was interrupted and says "
                      f"rerun_after_crash: false")
            self._pause(changes, tickets.Severity.CRITICAL, reason,
                        f"The daemon running sub-objective {index} ({step.title}) stopped "
                        f"or died mid-attempt, and the step must not run twice. Check "
                        f"whether its effects happened before approving.")
        else:
            self._write(changes)

    # --- usage and budget ---------------------------------------------------------

    def _fold_usage(self, step: SubObjective, attempt_no: int, attempt: Attempt) -> None:
        scratch = self.runs_dir / f"{step.index}-{attempt_no}.usage.jsonl"
        try:
            records = usage.read_lines(scratch, warn=True)
        except OSError as e:  # the runs folder is unusable (the step could not start)
            log.warning("usage of plan %s step %d not read: %s", self.plan.id, step.index, e)
            records = []
        duration = round((attempt.ended - attempt.started).total_seconds(), 3)
        if not records:  # one line per executor call, even when it reported nothing
            records = [{"timestamp": format_time(attempt.ended), "model": None,
                        "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
                        "call_id": f"{self.plan.id}-{step.index}-{attempt_no}",
                        "agent_id": step.agent or step.kind.value}]
        for r in records:
            for key in usage.FIELDS:
                r.setdefault(key, None)
            r.update(plan_id=self.plan.id, step_index=step.index, attempt=attempt_no)
            r.setdefault("duration_s", duration)
        usage.append(self.usage_path, records)
        self.totals = self.totals.add(records)

    def _spent(self, reflection_log: list[dict]) -> list[tuple[str, float, float]]:
        """(budget, used, limit) for each budget the plan sets."""
        b = self.plan.budget
        # Running time is the time its attempts took: hours spent paused do not count.
        running = sum(float(e.get("duration_s") or 0) for e in reflection_log)
        spent = [("tokens", self.totals.tokens, b.tokens),
                 ("cost_usd", self.totals.cost_usd, b.cost_usd),
                 ("wall_clock", running, b.wall_clock)]
        return [(name, used, limit) for name, used, limit in spent if limit]

    def _over_budget(self) -> bool:
        for name, used, limit in self._spent(self.plan.reflection_log):
            if used > limit:
                reason = f"budget {name} exhausted: {used:g} of {limit:g}"
                self._pause({}, tickets.Severity.CRITICAL, reason,
                            f"The plan used {used:g} of its {name} budget of {limit:g}. "
                            f"Raise `budget` in the plan before approving, or decline.")
                return True
            if used >= 0.8 * limit and name not in self.warned:
                self.warned.add(name)
                budget_log.warning("plan %s used %.0f%% of its %s budget (%g of %g)",
                                   self.plan.id, 100 * used / limit, name, used, limit,
                                   extra={"modulatio_event": "context_budget_soft_warn",
                                          "plan_id": self.plan.id, "budget": name,
                                          "used": used, "limit": limit})
        return False

    # --- writing ------------------------------------------------------------------

    def _pause(self, changes: dict, severity: tickets.Severity, reason: str,
               details: str) -> None:
        """Pause with a ticket. The ticket is written first: a crash in between leaves a
        ticket too many (closed with a note once decided), never a paused plan that
        nobody is asked about."""
        ticket_id = tickets.open_ticket(
            self.held.vault, self.held.project, self.plan.id, severity, reason, details,
            {"current_index": self.plan.current_index, "rev": self.plan.rev + 1}, self.clock())
        self.events("ticket_opened", project=self.held.project, plan=self.plan.id,
                    ticket=ticket_id, severity=severity.value, reason=reason)
        self._write({**changes, "status": PlanStatus.PAUSED.value, "last_error": reason})
        self._status_event(PlanStatus.EXECUTING, PlanStatus.PAUSED)

    def _status_event(self, before: PlanStatus, after: PlanStatus) -> None:
        self.events("status_changed", project=self.held.project, plan=self.plan.id,
                    previous=before.value, status=after.value, by="daemon")

    def _refresh(self) -> None:
        try:
            self.held.refresh()
        except BadFile as e:
            self._report_bad(e)

    def _write(self, changes: dict) -> Plan:
        """held.update, waiting out a person's broken save rather than overwriting it.

        A file gone for longer than an editor's save takes was deleted or moved away:
        FileNotFoundError then goes up and the daemon lets the plan go. A write that
        keeps failing otherwise (disk full, permissions) is tried again for a while,
        holding the plan, then goes up too: the daemon lets the plan go and holds
        off from it rather than dying.
        """
        gone_since = failing_since = None
        while True:
            try:
                return self.held.update(changes)
            except (OSError, FileChanged) as e:
                if isinstance(e, FileNotFoundError):
                    self._report_bad(e)
                    if self.stop.requested:
                        raise
                    gone_since = gone_since or time.monotonic()
                    if time.monotonic() - gone_since > SETTLE_S:
                        raise
                else:
                    if failing_since is None:
                        failing_since = time.monotonic()
                        log.error("cannot write %s, trying again: %s", self.plan_path, e)
                    patience = WRITE_RETRY_TICKS * self.tick_seconds
                    if self.stop.requested or time.monotonic() - failing_since > patience:
                        raise
                self.periodic(self.plan, None)
                self.waker.wait(self._beat_interval())
            except BadFile as e:
                self._report_bad(e)
                if self.stop.requested:
                    raise
                gone_since = None
                self.periodic(self.plan, None)
                self.waker.wait(self._beat_interval())

    def _report_bad(self, error: Exception) -> None:
        """Tell once per problem that the plan cannot be written back (it waits for a fix)."""
        if isinstance(error, BadFile):
            if not settled(self.plan_path, self.clock().timestamp()):
                return  # maybe an editor half way through its save: judge it once settled
        else:
            error = BadFile(self.plan_path, "is gone: deleted or moved away while it ran")
        self.refusals.tell(self.plan_path, self.held.project, error, str(error))


def _summary(log_path: Path) -> str:
    """The last non-empty line of a step's output, shortened."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    last = next((ln for ln in reversed(lines) if ln), "")
    return last if len(last) <= SUMMARY_CHARS else last[: SUMMARY_CHARS - 1] + "…"

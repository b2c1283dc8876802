"""One claimed plan: run its sub-objectives from current_index, write back, stop.

The caller holds the plan's lock for the whole call. For each attempt:
1. write `in_flight` {index, attempt, token, started_at} (found on resume, it
   means the attempt may have run partly: it runs again, or the plan pauses
   with a ticket when the step says `rerun_after_crash: false`);
2. run the attempt (attempt.py): start the step's child and wait on its exit,
   the wake-up pipe and the clock: a person's abort kills its process group
   now, a pause lets it finish, a timeout kills it, a stop request (SIGTERM)
   kills it and leaves the plan `executing` at the same index with `in_flight`;
3. fold the attempt's usage into `<plan-id>.usage.jsonl` (budget.py: tried
   with the patience of a plan write; lines that still cannot be written are
   kept and tried again at each step boundary and as the run ends, but never
   hold back the attempt's result), ask the
   reflector (reflect.py), and write one update (writeback.py): the
   reflection_log entry, in_flight cleared (or set for the next step, see
   `_prewrite_next`), and the decision's current_index or status. Pausing
   opens a ticket.
The run ends when the plan is completed, failed, paused or aborted, when the daemon is asked
to stop, or for a delayed retry or an expiry (writeback.py); an ended plan keeps no `claim`
(a later claim takes its token from the log). Before each attempt the budget is checked.

Lock lost: before each attempt and at every beat while one runs, the holder
checks that the path of its lock file still names the inode it locked
(store/lock.py `still_ours`). A lock file deleted or replaced (a person, a
sync tool) lets another claimer lock a new inode, so the holder starts no new
attempt; `lock_lost` is recorded. A running attempt is not killed for it (the
file went, the work did not): it ends as it would, and its result is written
only if the plan on disk still carries our claim token (another daemon of this
host waits until our heartbeat says we left the plan; one of another host may
have claimed it: then nothing is written and the step runs again there). Then
the lock is released and the plan goes to whoever holds the new lock.

Fenced: a host cut off the network keeps running its step while the file
server frees its lock (after its ping timeout); another daemon then claims
the plan with a higher token. Whenever the plan is read (at every beat while
a step runs, between steps) and at every write (HeldPlan.update checks the
plan as read just before the swap), a higher claim token than ours means the
plan is lost: the running step is killed, nothing more is written to the
plan (not even the touch of a release), `claim_lost_to_fence` is recorded and
the daemon goes back to its loop. A read that fails meanwhile (the mount cut
off: ENOTCONN, EIO) is logged and looked at again at the next beat.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path

from modulatio_d.core import people
from modulatio_d.core.errors import Fenced
from modulatio_d.core.plan import FINAL, Plan, PlanStatus, SubObjective
from modulatio_d.core.times import parse_time
from modulatio_d.core.verdict import FAILURES, Decision, Outcome, Verdict
from modulatio_d.daemon import attempt, reflect
from modulatio_d.daemon.attempt import Attempt, reflection_entry, step_files
from modulatio_d.daemon.budget import Budget
from modulatio_d.daemon.edits import PAUSE_CHANGES, Watch
from modulatio_d.daemon.executors import StepContext
from modulatio_d.daemon.services import Services
from modulatio_d.daemon.story import together
from modulatio_d.daemon.writeback import PlanWriter
from modulatio_d.store import tickets
from modulatio_d.store.lock import FileLock, holder
from modulatio_d.store.plan_file import HeldPlan, claim_token

log = logging.getLogger("modulatio.runner")


class Runner:
    def __init__(self, held: HeldPlan, lock: FileLock, token: int, svc: Services,
                 prewritten: tuple[int, int] | None = None):
        self.held, self.lock, self.token, self.svc = held, lock, token, svc
        held.token = token
        self.writer = PlanWriter(held, svc, lambda: self._lost if self._lock_lost() else None)
        self.budget = Budget(held.path, svc.clocks.wall, svc.events)
        self.plan_dir, self.runs_dir = held.path.parent, held.path.with_suffix(".runs")
        self._prewritten = prewritten  # (index, attempt) in flight ahead: by the claim, or below
        self._lost: str | None = None  # how our lock file was lost, once it was
        self.edits = Watch()  # a person's edits of the steps (daemon/edits.py)

    @property
    def plan(self) -> Plan:
        return self.held.plan

    def run(self) -> None:
        try:
            self.writer.expire_if_due() or self._run()  # expired: never run
        except Fenced as e:
            self._fenced(e.theirs)
        finally:
            self._flush_usage(patient=False)
            if self.budget.pending:
                lost = self.budget.pending_lines()
                log.error("plan %s: %d usage lines could not be written to %s and are lost "
                          "(append them by hand): %s", self.plan.id, len(lost),
                          self.budget.usage_path, json.dumps(lost, sort_keys=True))

    def _run(self) -> None:
        if self.plan.in_flight and self._prewritten is None:
            self._resume_interrupted()
        while True:
            if self.svc.stop.ending() or self.svc.halt():  # a stop, a drain, a pause
                self._drop_unstarted()
                return
            if self._lock_lost():
                return
            self._flush_usage(patient=False)
            self.writer.refresh()
            self._check_fence()
            plan = self.plan
            if plan.status is not PlanStatus.EXECUTING:
                log.info("plan %s is %s: stopping", plan.id, plan.status.value)
                self._drop_unstarted()
                if plan.status in FINAL and plan.claim is not None:
                    self.writer.write({"claim": None})  # ended (a person aborted it)
                elif people.stale(self.plan):
                    self.writer.write({})  # `progress` says it stopped (a person paused it)
                return
            if (edited := self.edits.edited(plan)) is not None:  # daemon/edits.py
                self._prewritten = None  # its in_flight goes in the pause's write
                self.writer.pause(dict(PAUSE_CHANGES), tickets.Severity.WARNING, *edited)
                return
            if plan.shape is not None and plan.shape.body_error:
                self.writer.fail_closed(plan)  # Modulatio's Sub-objectives do not parse
                return
            if plan.current_index >= plan.total:
                self.writer.write({"status": PlanStatus.COMPLETED.value,
                                   "completed_at": self.svc.clocks.wall(),
                                   "in_flight": None, "last_error": None, "claim": None})
                self.writer.status_event(PlanStatus.EXECUTING, PlanStatus.COMPLETED)
                return
            if self._over_budget():
                return
            self._run_step(plan.sub_objectives[plan.current_index])

    # --- one attempt ------------------------------------------------------------

    def _run_step(self, step: SubObjective) -> None:
        tail = self.writer.tail(step.index)
        number = len(tail) + 1
        started = self.svc.clocks.wall()
        if self._prewritten != (step.index, number):
            self.writer.write({"in_flight": self._in_flight(step.index, number, started)})
        self._prewritten = None
        self.svc.events("step_started", project=self.held.project, plan=self.plan.id,
                        index=step.index, attempt=number, title=step.title)
        self.svc.periodic(self.plan, step)
        self.edits.ran(step)
        log_path, scratch = step_files(self.runs_dir, step.index, number)
        ctx = StepContext(self.held.vault.root, self.held.project, self.plan, step, number,
                          self.token, scratch, self.svc.config, self.svc.base_env)
        done = self._attempt(ctx, log_path, started, step)
        self._check_fence()
        if done.outcome is Outcome.INTERRUPTED:
            log.info("plan %s step %d stopped (shutdown); left in flight", self.plan.id,
                     step.index + 1)  # steps counted from 1 in the log, as people count
            return
        if self._lost and not self._token_on_disk():
            log.warning("plan %s step %d ended after its lock file was %s, and the plan no "
                        "longer carries our claim: its result is not written (the step runs "
                        "again under the new claim)", self.plan.id, step.index + 1, self._lost)
            return
        self.budget.fold(self.plan, step, number, done, scratch)
        self._flush_usage(patient=True)
        failures = self.writer.failures(step, tail, self.token, done.outcome in FAILURES)
        if done.outcome is Outcome.ABORTED:
            verdict = Verdict(Decision.ABORT, "aborted by a person")
        else:
            verdict = reflect.decide(self.plan.reflector or self.svc.config.reflector, step,
                                     done.outcome, failures,
                                     reflection_entry(step, number, done, None, self.token,
                                                      self.plan_dir),
                                     str(self.plan_dir), self.svc.base_env,
                                     self._reflector_wait(step))
        self._record(step, number, done, verdict, failures)

    def _attempt(self, ctx: StepContext, log_path: Path, started: datetime,
                 step: SubObjective) -> Attempt:
        """attempt.run; when the vault cannot give the step its log (EIO, ENOSPC: nothing
        ran), tried again with the patience of a plan write, then an `error`; a stop
        asked meanwhile leaves the step in flight (`interrupted`), as at any beat."""
        done: list[Attempt] = []
        failed: list[OSError] = []

        def once() -> None:
            try:
                held = (self.lock.fd, *(self.svc.slots.fds if self.svc.slots else ()))
                with self.svc.waker.focused(self.held.path):  # other plans' writes: later
                    done.append(attempt.run(ctx, log_path, held, started, self.svc,
                                            lambda: self._between(step)))
            except attempt.NotPrepared as e:
                failed[:] = [e]
                raise

        if self.writer.patiently(once, f"the step log {log_path}"):
            return done[0]
        outcome = Outcome.INTERRUPTED if self.svc.stop.requested or self.svc.halt() == "now" \
            else Outcome.ERROR
        return Attempt(outcome, "not started", started, self.svc.clocks.wall(), log_path,
                       str(failed[0]))

    def _reflector_wait(self, step: SubObjective) -> reflect.Wait:
        """Watch a reflector's child like a step: heartbeat, watchdog and cron go on."""
        def wait(child, timeout: float):
            with self.svc.waker.focused(self.held.path):  # as for a step (daemon/wake.py)
                return attempt.watch(child, self.svc.clocks.monotonic() + timeout, self.svc,
                                     lambda: self.svc.periodic(self.plan, step))
        return wait

    def _between(self, step: SubObjective) -> Outcome | None:
        """While the step runs: heartbeat, lock check, the plan re-read; how to stop it now
        (ABORTED when a person aborted the plan; a lost lock file stops nothing running)."""
        self.svc.periodic(self.plan, step)
        self._lock_lost()  # told at once; the attempt ends as it would
        self.writer.refresh()
        if self.held.fenced_by() is not None:
            return Outcome.INTERRUPTED  # not ours any more: stop it now (see above)
        return Outcome.ABORTED if self.plan.status is PlanStatus.ABORTED else None

    def _check_fence(self) -> None:
        theirs = self.held.fenced_by()
        if theirs is not None:
            raise Fenced(self.held.path, self.token, theirs)

    def _fenced(self, theirs: int) -> None:
        claim = self.plan.claim if isinstance(self.plan.claim, dict) else {}
        if claim_token(claim) != theirs:  # the new holder ended the plan: its note says who
            notes = (self.lock.noted() if self.lock.fd is not None else {}, holder(self.lock.path))
            claim = next((n for n in notes if n.get("token") == theirs), {})
        log.error("plan %s was claimed by %s pid %s with token %d over ours (%d): our lock "
                  "was freed under us (cut off from the file server?); its step is stopped "
                  "and nothing more is written", self.plan.id, claim.get("host"),
                  claim.get("pid"), theirs, self.token)
        self.svc.events("claim_lost_to_fence", project=self.held.project, plan=self.plan.id,
                        token=self.token, new_token=theirs, new_host=claim.get("host"),
                        new_pid=claim.get("pid"), index=self.plan.current_index)

    def _token_on_disk(self) -> bool:
        """Whether the plan file, read now, still names our claim token."""
        self.writer.refresh()
        claim = self.plan.claim or {}
        return claim.get("token") == self.token and self.plan.status is PlanStatus.EXECUTING

    def _lock_lost(self) -> bool:
        """Whether our lock file was deleted or replaced (told once: `lock_lost`)."""
        if self._lost is None:
            how = self.lock.still_ours()
            lost = self.svc.slots.lost() if self.svc.slots and how is None else None
            if how is None and lost is None:
                return False
            path, how = (lost if lost is not None else (self.lock.path, how))
            self._lost = how
            log.error("plan %s: its lock file %s was %s while we held it; no new step is "
                      "started and the plan is left to whoever holds the new lock (never "
                      "delete a .lock file)", self.plan.id, path, how)
            self.svc.events("lock_lost", project=self.held.project, plan=self.plan.id,
                            lock=str(path), how=how, token=self.token,
                            index=self.plan.current_index)
        return True

    # --- after an attempt ---------------------------------------------------------

    def _record(self, step: SubObjective, number: int, done: Attempt, verdict: Verdict,
                failures: int = 0) -> None:
        entry = reflection_entry(step, number, done, verdict.decision, self.token, self.plan_dir)
        changes: dict[str, object] = {"reflection_log": [*self.plan.reflection_log, entry],
                                      "in_flight": None}
        if self.plan.shape is not None:  # Modulatio's running totals, kept up to date
            tokens, cost = self.budget.last
            changes["tokens_used"] = self.plan.shape.tokens_used + tokens
            changes["cost_usd_used"] = round(self.plan.shape.cost_usd_used + cost, 6)
        executing = self.plan.status is PlanStatus.EXECUTING
        d = verdict.decision
        self.writer.retry_later(step, failures, changes, d is Decision.RETRY and executing)
        if d is Decision.CONTINUE:
            changes["current_index"] = step.index + 1
            changes["last_error"] = None
            changes["steps_digest"] = self.edits.after(self.plan, step)
            if executing and step.index + 1 >= self.plan.total:
                changes.update({"status": PlanStatus.COMPLETED.value, "claim": None,  # ends it
                                "completed_at": self.svc.clocks.wall()})  # in one write
            self._prewrite_next(changes, step.index + 1)
        elif d is not Decision.RETRY:
            changes["last_error"] = f"step {step.index + 1} ({step.title}): " \
                                    f"{verdict.reason}; last attempt: {done.exit}"
            if executing and d is Decision.ABORT:
                changes["status"] = PlanStatus.FAILED.value
                changes["claim"] = None  # the plan ended: it keeps no claim
        # A run's end: `step_ended` and the status change in one append, after the write.
        with together(self.svc.events if executing and ("status" in changes or d in (
                Decision.PAUSE, Decision.REVISE_MAJOR)) else None):  # (None: one at a time)
            self._end_step(step, number, done, verdict, changes, entry["duration_s"], executing)

    def _end_step(self, step: SubObjective, number: int, done: Attempt, verdict: Verdict,
                  changes: dict, duration_s: float, executing: bool) -> None:
        self.svc.events("step_ended", project=self.held.project, plan=self.plan.id,
                        index=step.index, attempt=number, outcome=done.outcome.value,
                        exit=done.exit, decision=(d := verdict.decision).value,
                        duration_s=duration_s, title=step.title,
                        log=os.path.relpath(done.log_path, self.held.vault.root))
        if executing and d in (Decision.PAUSE, Decision.REVISE_MAJOR):
            severity = tickets.Severity.CRITICAL if d is Decision.REVISE_MAJOR \
                else tickets.Severity.WARNING
            self.writer.pause(changes, severity, str(changes["last_error"]),
                              f"Step {step.index + 1} ({step.title}) ended with "
                              f"{done.outcome} ({done.exit}) on attempt {number}.\n\n"
                              f"Reflector: {verdict.reason}.\n\nLog: {done.log_path}\n\n"
                              f"Last output: {done.summary}")
            return
        before = self.plan.status
        plan = self.writer.write(changes)
        if plan.status is not before:
            self.writer.status_event(before, plan.status, plan.last_error)

    def _flush_usage(self, patient: bool) -> None:
        """Append the pending usage lines; when they cannot be written, they wait."""
        if not self.budget.pending:
            return
        if patient:
            if self.writer.patiently(self.budget.flush, str(self.budget.usage_path)):
                return
        else:
            try:
                self.budget.flush()
                return
            except OSError as e:
                log.warning("cannot write %s yet: %s", self.budget.usage_path, e)
        log.warning("plan %s: %d usage lines kept in memory, to be written later; the run "
                    "goes on", self.plan.id, len(self.budget.pending_lines()))

    def _in_flight(self, index: int, number: int, at: datetime) -> dict:
        return {"index": index, "attempt": number, "token": self.token, "started_at": at}

    def _prewrite_next(self, changes: dict, index: int) -> None:
        """Record the next step as in flight in the same write that ends this one.

        One durable write a step instead of two. Only when the next step will start
        right away: the plan runs on, no stop is asked, the budget has room, and the
        step may re-run after a crash (a crash between this write and its start
        makes it look interrupted, which must not pause a rerun_after_crash: false
        step that never ran). If the plan stops first, _drop_unstarted clears it.
        """
        plan = self.plan
        if index >= plan.total or self.svc.stop.ending() or self.svc.halt() \
                or self._lock_lost() \
                or plan.status is not PlanStatus.EXECUTING \
                or not plan.sub_objectives[index].rerun_after_crash \
                or not self.budget.room_after(plan, changes["reflection_log"]):
            return
        changes["in_flight"] = self._in_flight(index, 1, self.svc.clocks.wall())
        self._prewritten = (index, 1)

    def _drop_unstarted(self) -> None:
        """Clear an in_flight record written ahead for a step that never started."""
        if self._prewritten is not None:
            self._prewritten = None
            self.writer.write({"in_flight": None})

    def _resume_interrupted(self) -> None:
        """The last attempt was in flight when its daemon stopped or died."""
        f = self.plan.in_flight or {}
        index = f.get("index", self.plan.current_index)
        if index != self.plan.current_index or index >= self.plan.total:
            self.writer.write({"in_flight": None})  # a person moved current_index: theirs wins
            return
        step = self.plan.sub_objectives[index]
        now = self.svc.clocks.wall()
        number = f.get("attempt", 1)
        rerun = step.rerun_after_crash
        lost = Attempt(Outcome.INTERRUPTED, "daemon stopped or died",
                       parse_time(f.get("started_at")) or now, now,
                       step_files(self.runs_dir, index, number)[0], "")
        entry = reflection_entry(step, number, lost,
                                 Decision.RETRY if rerun else Decision.PAUSE,
                                 f.get("token"), self.plan_dir)
        self.svc.events("orphan_step", project=self.held.project, plan=self.plan.id,
                        index=index, attempt=f.get("attempt"), rerun=rerun)
        changes: dict[str, object] = {"reflection_log": [*self.plan.reflection_log, entry],
                                      "in_flight": None}
        if not rerun:
            reason = (f"step {index + 1} ({step.title}) was interrupted and says "
                      f"rerun_after_crash: false")
            self.writer.pause(changes, tickets.Severity.CRITICAL, reason,
                              f"The daemon running step {index + 1} ({step.title}) "
                              f"stopped or died mid-attempt, and the step must not run twice. "
                              f"Check whether its effects happened before approving.")
        else:
            self.writer.write(changes)

    def _over_budget(self) -> bool:
        spent = self.budget.exhausted(self.plan)
        if spent is None:
            return False
        reason, details = spent
        self.writer.pause({}, tickets.Severity.CRITICAL, reason, details)
        return True

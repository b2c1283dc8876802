"""Claiming a plan: the compare-and-swap at the heart of the protocol.

Protocol of `Claimer.claim(candidate)`, for a plan the scan found claimable:
1. flock(LOCK_EX | LOCK_NB) on `<plan-id>.lock` (store/lock.py). Busy means
   another daemon claims or runs it, or a command is writing it: the claim
   is lost (`claim_lost`) and the caller tries the next plan.
2. Read the plan fresh: when the lock file notes the last holder's `rev`
   (written and fsynced before it released the lock, step 6), the plan is
   read again (a new open each time) until its rev is at least that, for up
   to FRESH_WAIT_S: on a shared filesystem this host's client may still serve
   the version from before the last holder's last write (docs/multi-host.md).
   Past the wait it goes on with what it reads (`claim_read_behind`: a
   person's stale save can bring an older rev back; the record repairs it).
   On a network filesystem (`shared`) the note itself can read old: on the
   GlusterFS test bed, taken the moment the other host let the lock go, an
   O_DIRECT read (store/lock.py) still returned the previous holder's claim-time
   note, without `released`, or none at all, for about 0.2 s, in about one take
   of ten (the client's cached size bounds even an O_DIRECT read). So there a
   note that does not say `released` (or none, for a plan seen `executing`) is
   read again until it does, for up to FRESH_WAIT_S: a holder that died wrote
   none, and is then taken over that much later. The plan's reads there are
   O_DIRECT, and one that fails (cut short: it does not parse) is tried again
   within the same wait.
   Before that, the file's owner and mode are checked again (store/trust.py:
   the scan judged the version it saw). Then re-read the plan under the lock
   (HeldPlan). A person's stale save, one
   that brings back daemon keys older than the daemon's own record, is
   repaired from the record first (`stale_save_repaired`).
3. No longer `approved` or `executing` (claimed and finished meanwhile, or a
   person changed it): release and give up.
4. One write: `status: executing`, `claim` {host, pid, token, claimed_at}
   with a fencing token one higher than the last the plan saw (its claim's,
   else its log's: the claim is removed when a plan ends; or the token the
   lock file notes, if higher), and
   `execution_started_at` (kept if set). Then the holder is noted in the
   lock file, for people and `status` only: the flock is what excludes.
5. A plan found `executing` under a free lock is an orphan of a daemon that
   stopped or died: `orphan_recovered`, with the claim it had; any other is
   `claimed`, with its `status_changed`. Unless its `claim` names another
   daemon of this host that is alive (its pid runs `modulatio daemon`) and has
   not said it moved on (a heartbeat written since the claim naming another
   plan, or none): then its lock file was deleted or replaced under it, and the
   lock we hold is a new inode that excludes nobody. The plan is held, not
   orphaned: released untouched, `claim_refused_live_holder` (once per plan and
   holder). The holder notices the loss itself and lets the plan go
   (runner.py, `lock_lost`); its next heartbeat frees the plan for a claimer.
6. The lock is held until the run ends (`Claimed.release`), which first notes
   the plan's last rev and our token in the lock file (not when the run was
   fenced: the plan is not ours then), fsynced on a network filesystem. On a
   local disk it is not: every reader shares this kernel's page cache, and the
   plan's rev and token were fsynced in the plan before the note, so a note a
   power loss left older or empty asks the next claimer to wait for nothing the
   plan does not already hold (one fsync a plan less). A plan released
   while still `executing` (stopped mid-step) is touched: releasing a lock
   makes no file event, a changed mtime does, so idle daemons take the
   orphan over now rather than at their next tick.
A daemon that dies after 4 leaves the plan `executing` with its lock free:
step 5 of the next claimer, with a higher token. A bad plan or lock file is
logged and passed over; a plan deleted meanwhile too; a plan that cannot be
written (disk full, permissions) is passed over and `hold_off`, so that a
daemon neither dies nor spins on it. Anything else raised is released and
passed up to the per-plan guard (guard.py).

Lost races (`RaceRetries`): a lock held for a moment (a `plan approve` still
writing the plan it just woke us for, another daemon mid-claim) makes no
file event when it is released. So after passes that lost a claim and ran
nothing, the next pass comes after LOST_RACE_RETRY_S, then at the tick.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from modulatio_d.core import digest
from modulatio_d.core.errors import BadFile, FileChanged
from modulatio_d.core.plan import CLAIMABLE, Plan, PlanStatus
from modulatio_d.core.times import parse_time
from modulatio_d.daemon.budget import Budget
from modulatio_d.daemon.scan import Candidate
from modulatio_d.daemon.story import together
from modulatio_d.store import fs, heartbeat, processes
from modulatio_d.store.lock import FileLock, lock_path
from modulatio_d.store.plan_file import HeldPlan, ReadPlan, read_plan
from modulatio_d.store.trust import Checks
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.daemon")
LOST_RACE_RETRY_S = (0.05, 0.2, 1.0)
FRESH_WAIT_S = 3.0  # a shared filesystem's client cache is about 1 s stale at worst
FRESH_POLL_S = 0.05


class Missed(StrEnum):
    """Why a claim did not happen."""

    LOST = "lost"
    """The lock was busy: another daemon (or a command) has the plan."""
    NOT_CLAIMABLE = "not-claimable"
    """Under the lock the plan was no longer approved or executing."""
    REFUSED = "refused"
    """The plan or its lock file is bad (logged)."""
    GONE = "gone"
    """The plan file was deleted or moved away meanwhile."""
    UNWRITABLE = "unwritable"
    """The claim could not be written (disk full, permissions): hold off from the plan."""
    HELD = "held"
    """A live daemon of this host still runs it (its lock file was deleted or replaced)."""


@dataclass(frozen=True)
class Claimed:
    held: HeldPlan
    lock: FileLock
    token: int
    host: str = ""
    pid: int = 0
    prewritten: tuple[int, int] | None = None
    """(index, attempt) the claim wrote as in flight (see first_in_flight)."""
    shared: bool = True
    """The vault is on a network filesystem: the release's note is fsynced (step 6)."""

    def release(self) -> None:
        """Note our last rev, drop the lock; touch a plan left `executing` (step 6)."""
        if self.held.fenced_by() is None:
            claim = self.held.plan.claim if isinstance(self.held.plan.claim, dict) else {}
            try:
                # An ended plan has no claim left: the note still says who held it last
                # (a fenced holder back from a cut reads it, runner.py).
                who = {"host": self.host, "pid": self.pid} if self.host else {}
                self.lock.note_holder(sync=self.shared, **{
                    **who, **claim, "plan": self.held.plan.id, "token": self.token,
                    "rev": self.held.plan.rev, "released": True})
            except OSError as e:  # the next holder then reads without waiting: logged
                log.warning("cannot note the last rev of %s in its lock file: %s",
                            self.held.plan.id, e)
        self.lock.release()
        log.info("released %s (%s)", self.held.plan.id, self.held.plan.status.value)
        if self.held.plan.status is PlanStatus.EXECUTING and self.held.fenced_by() is None:
            try:
                os.utime(self.held.path)
            except OSError:
                pass


def first_in_flight(plan: Plan, path: Path, token: int, now: datetime) -> dict | None:
    """The `in_flight` record of the step a fresh claim starts at once, written in the
    claim's own write (one durable write a plan less; the runner's _prewrite_next does
    the same for the next step). Only under the runner's conditions for writing ahead
    (the step may re-run after a crash, the budget has room) and never over an
    existing record (an orphan's: the runner resumes from it)."""
    index = plan.current_index
    if plan.status is not PlanStatus.APPROVED or plan.in_flight is not None \
            or not 0 <= index < plan.total or not plan.sub_objectives[index].rerun_after_crash \
            or not Budget(path).room_after(plan, plan.reflection_log):
        return None
    attempt = 1
    for e in reversed(plan.reflection_log):  # the attempts of this run of the step so far
        if e.get("index") != index:
            break
        attempt += 1
    return {"index": index, "attempt": attempt, "token": token, "started_at": now}


class Claimer:
    def __init__(self, vault: Vault, events: Callable[..., None],
                 clock: Callable[[], datetime], host: str, pid: int,
                 trust: Checks | None = None):
        self.vault = vault
        self.events = events
        self.clock = clock
        self.host = host
        self.pid = pid
        self.trust = trust
        self._told_held: set[tuple[str, int]] = set()  # (plan, holder pid) reported
        self.shared = False  # the vault is on a network filesystem (set by the loop)

    def claim(self, c: Candidate) -> Claimed | Missed:
        lock = FileLock(lock_path(c.path))
        try:
            if not lock.try_acquire():
                log.info("claim %s: lost the race (locked by another daemon)", c.path.stem)
                self.events("claim_lost", project=c.project, plan=c.path.stem)
                return Missed.LOST
        except BadFile as e:
            log.error("claim %s: %s", c.path.stem, e)
            return Missed.REFUSED
        try:
            if self.trust is not None:  # the scan judged the file; this may be a newer one
                untrusted = self.trust.file_problem(c.path, fs.stat_of(c.path))
                if untrusted is not None:
                    raise untrusted
            noted = self._noted(lock, c.status is PlanStatus.EXECUTING)
            held = HeldPlan(self.vault, c.path, self.events, read=self._read_fresh(c, noted))
            plan = held.plan
            if plan.status not in CLAIMABLE:
                log.info("claim %s: now %s, not claimable", plan.id, plan.status.value)
                lock.release()
                return Missed.NOT_CLAIMABLE
            holder = self._live_holder(plan) if plan.status is PlanStatus.EXECUTING else None
            if holder is not None:
                lock.release()
                self._tell_held(c, plan.id, holder)
                return Missed.HELD
            token = max(plan.last_token, _int(noted.get("token"))) + 1
            now = self.clock()
            claim = {"host": self.host, "pid": self.pid, "token": token, "claimed_at": now}
            changes = {"status": PlanStatus.EXECUTING.value, "claim": claim,
                       "execution_started_at": plan.execution_started_at or now}
            if digest.parse(plan.steps_digest) is None:  # a new run: its steps so far
                changes["steps_digest"] = digest.render(
                    plan.current_index, plan.total,
                    digest.chain(plan.sub_objectives[:plan.current_index]))
            first = first_in_flight(plan, c.path, token, now)
            if first is not None:
                changes["in_flight"] = first
            held.update(changes)
            lock.note_holder(**{**claim, "claimed_at": now.isoformat(), "plan": plan.id})
        except BadFile as e:
            log.error("claim %s: %s", c.path.stem, e)
            lock.release()
            # A link or odd file where the plan's state goes (fs.Refused) cannot be written.
            return Missed.UNWRITABLE if isinstance(e, OSError) else Missed.REFUSED
        except (OSError, FileChanged) as e:  # gone, or cannot be written (disk full)
            log.error("claim %s: %s", c.path.stem, e)
            lock.release()
            return Missed.GONE if isinstance(e, FileNotFoundError) else Missed.UNWRITABLE
        except BaseException:  # not foreseen: the caller's guard counts it, unlocked
            lock.release()
            raise
        orphan = plan.status is PlanStatus.EXECUTING
        with together(self.events):  # one append for both lines
            self.events("orphan_recovered" if orphan else "claimed", project=c.project,
                        plan=plan.id, token=token, index=plan.current_index,
                        previous_claim=plan.claim if orphan else None)
            if not orphan:
                self.events("status_changed", project=c.project, plan=plan.id,
                            previous=plan.status.value, status="executing", by="daemon")
        log.info("claimed %s (token %d%s) with %d/%d steps done", plan.id, token,
                 ", orphan of a dead daemon" if orphan else "", plan.done, plan.total)
        return Claimed(held, lock, token, self.host, self.pid,
                       (first["index"], first["attempt"]) if first is not None else None,
                       self.shared)


    def _noted(self, lock: FileLock, orphan: bool) -> dict:
        """The lock file's note; on a network filesystem read again (bounded) while it
        names a holder that has not said it released, or is empty for a plan seen
        `executing` (`orphan`: whoever ran it noted its claim; step 2)."""
        noted = lock.noted(fresh=self.shared)
        deadline = time.monotonic() + FRESH_WAIT_S
        while self.shared and not noted.get("released") and (noted or orphan) \
                and time.monotonic() < deadline:
            time.sleep(FRESH_POLL_S)
            noted = lock.noted(fresh=self.shared)
        return noted

    def _read_fresh(self, c: Candidate, noted: dict) -> ReadPlan | None:
        """Wait (bounded) until the plan read here is at least the rev the lock notes;
        that read, which the claim then goes on with (a read after it could be older
        again on a network filesystem); None when there is no rev to wait for."""
        want = _int(noted.get("rev"))
        if not want:
            return None
        deadline = time.monotonic() + FRESH_WAIT_S
        while True:
            try:
                # Past the client's caches on a network filesystem: a new open alone
                # read the plan from before the last write for over 3 s on the test bed
                # (its metadata cache at 5 s).
                read = read_plan(self.vault, c.path, direct=self.shared)
            except (BadFile, ValueError, TypeError, OSError):
                if not self.shared or time.monotonic() >= deadline:
                    return None  # judged under the lock as before
                # A client's stale size can cut the plan short there: read it again.
                time.sleep(FRESH_POLL_S)
                continue
            if read.plan.rev >= want:
                return read
            if time.monotonic() >= deadline:
                log.warning("claim %s: the plan still reads rev %d, the lock notes rev %d; "
                            "going on with what is read", c.path.stem, read.plan.rev, want)
                self.events("claim_read_behind", project=c.project, plan=c.path.stem,
                            rev=read.plan.rev, noted_rev=want)
                return None
            time.sleep(FRESH_POLL_S)

    def _live_holder(self, plan) -> int | None:
        """The pid of another live daemon here that the plan's claim names and that may
        still run it (see step 5 of the protocol); None when the plan is an orphan."""
        claim = plan.claim if isinstance(plan.claim, dict) else {}
        pid = processes.as_pid(claim.get("pid"))
        if pid is None or claim.get("host") != self.host or pid == self.pid:
            return None
        if processes.gone(pid) or not processes.is_modulatio_daemon(pid):
            return None
        beat = heartbeat.read_one(self.vault.daemons_dir, self.host, pid)
        claimed_at = parse_time(claim.get("claimed_at"))
        # claimed_at is to the second: a beat from the same second may predate the claim.
        if beat is not None and claimed_at is not None \
                and beat["last_tick"] >= claimed_at + timedelta(seconds=1) \
                and beat.get("active_plan") != plan.id:
            return None  # it told the world it left this plan: an orphan now
        return pid

    def _tell_held(self, c: Candidate, plan_id: str, pid: int) -> None:
        if (plan_id, pid) in self._told_held:
            return
        self._told_held.add((plan_id, pid))
        log.warning("claim %s: its lock file was deleted or replaced, but daemon %d of this "
                    "host still runs it: not taken over (never delete a .lock file)",
                    plan_id, pid)
        self.events("claim_refused_live_holder", project=c.project, plan=plan_id,
                    holder_pid=pid, holder_host=self.host)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class RaceRetries:
    """How soon the next pass comes after passes that lost a claim to a busy lock."""

    def __init__(self, waits: tuple[float, ...] = LOST_RACE_RETRY_S):
        self.waits = waits
        self.lost = False  # in this pass a plan's lock was busy
        self.in_a_row = 0  # passes in a row that lost one and ran nothing

    def start_pass(self) -> None:
        self.lost = False

    def ran(self) -> None:
        """A plan ran: whatever was lost before is not worth hurrying for any more."""
        self.in_a_row = 0

    def next_wait(self, tick_seconds: float) -> float:
        """After a pass that ran nothing: how long to sleep before the next one."""
        self.in_a_row = self.in_a_row + 1 if self.lost else 0
        if 0 < self.in_a_row <= len(self.waits):
            return min(tick_seconds, self.waits[self.in_a_row - 1])
        return tick_seconds

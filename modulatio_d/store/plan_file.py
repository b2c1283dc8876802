"""Reading a plan, and writing it back as its lock holder or as a person would.

`read_plan` parses a plan file fully; it is what a scan calls for a plan that
can be claimed and what validate calls for every plan.

`HeldPlan` is the plan as its lock holder (a daemon, or a command that took
the lock) sees it. Every write goes through `update`: it splices only the
changed keys into the bytes last seen on disk, stamps the next `rev`, writes
atomically, then saves the record. When the file on disk is not what it last
saw (a person saved), it parses the person's file, repairs a stale save from
the record (only the record's own plan: owned_keys.belongs, judged at the first
read) and re-applies its own keys to the person's text; a person's
`paused` or `aborted` beats the holder's status change. When nothing changed,
no YAML is parsed at all: the in-memory Plan is advanced with the same changes.
A reflection_log past the holder's `window` has its oldest entries moved out to
`<plan-id>.reflection_log.jsonl` first (store/reflections.py: the file written
and fsynced before the plan; the splice then drops their lines and adds the new).

Fencing: once the holder's claim is written, `token` is its claim token. Every
`update` checks the plan as read at the moment of the write (atomic.rewrite
re-reads the file by path just before the swap) and raises Fenced, writing
nothing, when the plan names a higher token (its claim's, or, once the new
holder ended the plan and removed its claim, one in its log): another daemon claimed the
plan after our lock was freed under us (a host cut off the network past its
lock lease). `fenced_by` says the same of the plan as last read.

`write_as_person` is for a command that finds the lock held: it changes the
file the way an editor would (no rev, no record) and the holder honours it.

`change_status` is a status change by a command (`plan approve`, a ticket's
decision): it takes the plan's lock when it is free and writes as the lock
holder (rev stamp and record, stale saves repaired); when a daemon holds the
lock it writes as a person, and the daemon honours it: pause lets the running
step finish, abort kills it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from modulatio_d.core import digest, markdown, modulatio_shape, people
from modulatio_d.core.errors import Fenced, LockBusy
from modulatio_d.core.markdown import DELETE
from modulatio_d.core.plan import DAEMON_KEYS, Plan, PlanStatus, parse_plan, transition
from modulatio_d.core.times import utcnow
from modulatio_d.store import atomic, fs, owned_keys, reflections
from modulatio_d.store.lock import FileLock, holder, lock_path
from modulatio_d.store.vault import Vault, decode

Notify = Callable[..., None]
_PERSON_STOPS = (PlanStatus.PAUSED, PlanStatus.ABORTED)
_APPROVALS = ("approve", "resume", "retry")  # `recover` is no person's look at the steps


@dataclass(frozen=True)
class ReadPlan:
    snapshot: atomic.Snapshot
    plan: Plan


def read_plan(vault: Vault, path: Path, direct: bool = False) -> ReadPlan:
    snap, text = vault.read(path, direct=direct)
    return ReadPlan(snap, parse(path, text))


class _Parsed:
    """The scan's parses kept for the claim (see parse()): at most MAX plans, and TEXT
    characters of their texts in all (a parsed plan takes about 20 times its text in
    memory: 512 KiB of text, about 10 MB). The oldest go first; a longer text is not kept."""

    MAX, TEXT = 2048, 512 * 1024

    def __init__(self) -> None:
        self.kept: dict[str, tuple[str, Plan]] = {}  # path -> (text, its Plan)
        self.size = 0  # characters of the texts kept

    def take(self, key: str, text: str) -> Plan | None:
        kept = self.kept.pop(key, None)
        if kept is None:
            return None
        self.size -= len(kept[0])
        return kept[1] if kept[0] == text else None

    def keep(self, key: str, text: str, plan: Plan) -> None:
        if len(text) > self.TEXT:
            return
        while self.kept and (len(self.kept) >= self.MAX or self.size + len(text) > self.TEXT):
            self.size -= len(self.kept.pop(next(iter(self.kept)))[0])
        self.kept[key] = (text, plan)
        self.size += len(text)


_PARSED = _Parsed()


def parse(path: Path, text: str, remember: bool = False) -> Plan:
    """The Plan of a plan file's `text` (BadFile when it is refused).

    A plan parsed by the scan (`remember`) is kept until a read of the same path gives the
    same text, which then takes it instead of parsing again: the claim's read under the
    lock, a moment later (a backlog's plans were each parsed twice: about 0.3 ms of a
    one-step plan's CPU). The parse is pure (same path, same text: an equal Plan, never
    changed in place), and the texts are compared whole. Bounded (_Parsed)."""
    key = str(path)
    plan = _PARSED.take(key, text)
    if plan is not None:
        return plan
    plan = parse_plan(markdown.load(path, text), expected_id=path.stem)
    if remember:
        _PARSED.keep(key, text, plan)
    return plan


def _as_yaml_values(changes: dict[str, Any]) -> dict[str, Any]:
    # A daemon key set to None leaves the file rather than being written as null.
    return {k: (DELETE if v is None else v) for k, v in changes.items()}


def _in_files_words(plan: Plan, values: dict[str, Any], changes: dict[str, Any],
                    by: str) -> dict[str, Any]:
    """`values` as written into `plan`'s file: unchanged for this project's own shape; in
    the file's own words, times and status_transitions for a Modulatio-shaped one."""
    if plan.shape is None:
        return values
    note = changes.get("last_error") if isinstance(changes.get("last_error"), str) else None
    return modulatio_shape.file_values(plan.shape, values, utcnow(), by, note)


def _after(plan: Plan, written: dict[str, Any]) -> Plan:
    """`plan` (after with_keys) with its Modulatio shape advanced to what was written."""
    return plan if plan.shape is None else replace(plan, shape=plan.shape.after(written))


def _order(plan: Plan) -> tuple[str, ...]:
    """The daemon's keys in their stable order (this project's files; a Modulatio-shaped
    file keeps its own order: new keys at its end)."""
    return DAEMON_KEYS if plan.shape is None else ()


class HeldPlan:
    def __init__(self, vault: Vault, path: Path, notify: Notify | None = None,
                 repair: bool = True, read: ReadPlan | None = None):
        self.vault = vault
        self.path = path
        self.project = vault.project_of(path)
        self.record_path = vault.record_path(self.project, path.stem)
        self.notify = notify or (lambda *a, **k: None)
        self.token: int | None = None  # our claim token, once our claim is written
        self.actor = "daemon"  # decided_by of the status changes it writes (Modulatio files)
        self.window = reflections.WINDOW  # reflection entries the file keeps (the config's)
        self._offsets: dict[int, int] = {}  # of the file of older entries (reflections.move)
        # `read`: the plan as the caller just read it under the lock (daemon/claim.py, the
        # read found fresh): read again, another host's client could serve an older one.
        read = read or read_plan(vault, path)
        self.snapshot, self.plan = read.snapshot, read.plan
        self.record = owned_keys.load(self.record_path)
        self.rev_floor = 0  # the rev of a record of another plan with this id: never gone back
        if self.record is not None and not owned_keys.belongs(self.plan, self.record):
            # A new plan given the id of one the record was written for (owned_keys): it
            # is not a stale save of that one. Its first write starts its own record.
            self.notify("record_of_another_plan", plan=self.plan.id,
                        record_rev=self.record.rev)
            self.rev_floor, self.record = self.record.rev, None
        if repair:  # not for `plan restore`: the file as it stands is the truth
            self._repair()

    def _repair(self) -> None:
        fix = owned_keys.repairs(self.plan, self.record)
        if fix:
            self.notify("stale_save_repaired", plan=self.plan.id, file_rev=self.plan.rev,
                        record_rev=self.record.rev)  # type: ignore[union-attr]
            self.update(fix)  # the file is unchanged since read: update() would not repair it

    def _move_out(self, plan: Plan, final: dict[str, Any]) -> int:
        """Step 1 of store/reflections.py's protocol when `final`'s reflection_log is past
        the window: its oldest entries written to the file beside the plan, and `final`
        changed to the window left and the new count. How many moved."""
        log = final.get("reflection_log")
        n = reflections.overflow(len(log), self.window) if isinstance(log, list) else 0
        if not n or plan.shape is not None:  # Modulatio's readers read the whole log there
            return 0
        # The count a repair puts back (a stale save's is older), else the file's.
        before = final.get("reflection_archived", plan.reflection_archived) or {}
        at = int(before.get("entries") or 0)
        reflections.move(self.path, at, log[:n], self._offsets)
        spent = float(before.get("duration_s") or 0) \
            + sum(float(e.get("duration_s") or 0) for e in log[:n])
        final["reflection_log"] = log[n:]
        final["reflection_archived"] = {"entries": at + n, "duration_s": round(spent, 3)}
        return n

    def refresh(self) -> bool:
        """Re-read the plan if its file changed on disk; True when its content did."""
        try:
            if atomic.signature(fs.stat_of(self.path)) == self.snapshot.signature:
                return False
            snap, text = self.vault.read(self.path)
        except FileNotFoundError:
            return False  # an editor between rename and write: look again later
        if snap.raw == self.snapshot.raw:
            self.snapshot = snap
            return False
        # Parse before taking the snapshot: update() splices into the snapshot's bytes
        # unparsed, so a broken save must never become it (update then waits for a fix).
        self.plan = parse(self.path, text)
        self.snapshot = snap
        self._repair()
        return True

    def fenced_by(self, plan: Plan | None = None) -> int | None:
        """The higher claim token `plan` (default: as last read) carries, if another
        daemon claimed it over ours; None while it is still ours."""
        if self.token is None:
            return None
        plan = plan or self.plan
        # The claim is removed when a plan ends: a new holder that already completed the
        # plan left its token only in the log (last_token).
        theirs = max(claim_token(plan.claim) or 0, plan.last_token)
        return theirs if theirs > self.token else None

    def update(self, changes: dict[str, Any]) -> Plan:
        """Write the holder's `changes` (daemon keys, status) and return the plan after it."""
        outcome: dict[str, Plan] = {}

        def apply(raw: bytes) -> bytes:
            text = decode(self.path, raw)
            mine = dict(changes)
            grown = False
            if raw == self.snapshot.raw:
                plan = self.plan
                new_log, old = mine.get("reflection_log"), plan.reflection_log
                # The file holds exactly our log: add only the new entries' lines.
                grown = isinstance(new_log, list) and bool(old) and new_log[:len(old)] == old
            else:  # a person saved since we last looked
                plan = parse(self.path, text)
                fix = owned_keys.repairs(plan, self.record)
                if plan.status is not self.plan.status and plan.status in _PERSON_STOPS \
                        and "status" not in fix:
                    if mine.pop("status", None) == PlanStatus.COMPLETED.value:
                        # A last step's write ends the plan too: not over a person's stop.
                        mine.pop("completed_at", None)
                        mine.pop("claim", None)
                mine = {**fix, **mine}
            theirs = self.fenced_by(plan)
            if theirs is not None:
                self.plan = plan
                raise Fenced(self.path, self.token or 0, theirs)
            rev = max(plan.rev, self.record.rev if self.record else self.rev_floor) + 1
            final = {**mine, "rev": rev}
            moved = self._move_out(plan, final)
            if plan.shape is None:  # the people's view: this project's own files
                final.update(people.stale(plan.with_keys(final)))
            outcome["before"] = plan
            values = _as_yaml_values(final)
            old = len(plan.reflection_log)
            if grown and moved <= old:  # only the lines of the entries moved out go, too
                values["reflection_log"] = markdown.Append(final["reflection_log"],
                                                           start=old - moved, drop=moved)
            values = _in_files_words(plan, values, final, self.actor)
            outcome["plan"] = _after(plan.with_keys(final), values)
            return markdown.set_keys(text, values, self.path,
                                     _order(plan)).encode()

        self.snapshot = atomic.rewrite(self.path, apply, self.snapshot)
        self.plan = outcome["plan"]
        before = outcome["before"]
        self.record = owned_keys.save(self.record_path, self.plan, self.record,
                                  before=(before.rev, before.status.value))
        return self.plan


def claim_token(claim: object) -> int | None:
    """The fencing token of a plan's `claim` mapping (None: none, or not a number)."""
    if not isinstance(claim, dict):
        return None
    try:
        return int(claim.get("token"))
    except (TypeError, ValueError, OverflowError):
        return None


def write_as_person(vault: Vault, path: Path,
                    changes: dict[str, Any] | Callable[[Plan], dict[str, Any]],
                    ) -> tuple[Plan, Plan]:
    """Change a plan whose lock another process holds, the way an editor would.

    `changes` may be a function of the plan as it is on disk at the moment of the
    write (a status transition must be judged on that, not on an earlier read).
    Returns the plan before and after.
    """
    outcome: dict[str, Plan] = {}

    def apply(raw: bytes) -> bytes:
        text = decode(path, raw)
        plan = parse(path, text)
        mine = dict(changes(plan) if callable(changes) else changes)
        if plan.shape is None:
            mine.update(people.stale(plan.with_keys(mine)))
        values = _in_files_words(plan, _as_yaml_values(mine), mine, "command")
        outcome.update(before=plan, after=_after(plan.with_keys(mine), values))
        return markdown.set_keys(text, values, path, _order(plan)).encode()

    atomic.rewrite(path, apply, vault.read(path)[0])
    return outcome["before"], outcome["after"]


def change_status(vault: Vault, plan_id: str, action: str, now: datetime,
                  events: Notify) -> Plan:
    """Apply `action` (a key of plan.TRANSITIONS) to a plan, as its lock holder when the
    lock is free, else as a person; logs `status_changed` (by: command)."""
    project, path = vault.find("plans", plan_id)
    lock = FileLock(lock_path(path))
    if lock.try_acquire():
        with lock:
            held = HeldPlan(vault, path, events)
            held.actor = "command"
            before = held.plan.status
            plan = held.update(_changes(held.plan, action, now))
            try:  # for the next holder's fresh read (daemon/claim.py, step 2)
                lock.note_holder(sync=True, plan=plan_id, rev=plan.rev, by="command",
                                 token=claim_token(plan.claim) or 0, released=True)
            except OSError:
                pass  # it then reads the plan as it finds it, as before
    else:
        if action == "recover":
            raise LockBusy(lock_path(path), _describe(holder(lock_path(path))))
        was, plan = write_as_person(vault, path, lambda p: _changes(p, action, now))
        before = was.status
    events("status_changed", project=project, plan=plan_id, by="command", action=action,
           previous=before.value, status=plan.status.value)
    return plan


def _changes(plan: Plan, action: str, now: datetime) -> dict[str, object]:
    status = transition(plan.id, plan.status, action)
    changes: dict[str, object] = {"status": status.value}
    if action == "approve" and plan.status is PlanStatus.DRAFT:
        changes["approved_at"] = now
    if action in _APPROVALS and plan.shape is None:  # the steps approved as they are now
        # (a Modulatio-shaped file keeps its own keys: docs/migrating-from-modulatio.md)
        changes["approved_digest"] = digest.of_plan(plan.sub_objectives)
    return changes


def _describe(info: dict) -> str:
    if not info:
        return ""
    return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('claimed_at')}"

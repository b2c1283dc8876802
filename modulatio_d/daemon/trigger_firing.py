"""The daemons' side of watch triggers: changed files become kickoff plans, exactly once.

Protocol of `TriggerFirer.fire_due(project, now)`, called with the cron firing
(every tick, and while a step runs), for each watch trigger whose `poll` time
came (webhook triggers are fired by `trigger fire`, ops/triggers.py):
1. flock(LOCK_EX | LOCK_NB) on `<id>.lock`; busy means another daemon is
   looking at this trigger now: leave it to that one.
2. Read the state (`<id>.state.json`: the batch number, the signatures seen,
   the pending batch). If the pending batch's kickoff exists already (its
   maker died before it wrote the state), the batch is done: number + 1,
   batch emptied.
3. Look at the watched paths by polling: stat every file a pattern matches (a
   folder: every file beneath it). Polling, not inotify, so that it works on
   every filesystem (NFS, GlusterFS, a FUSE mount) and whichever daemon holds
   the lock sees every change made since the last look, by anyone. The first
   look takes what exists as the baseline. A changed, new or removed file
   joins the pending batch; the batch holds at most `capacity` paths, beyond
   which `overflow` drops the oldest or the newest, told once per batch with
   a `trigger_overflow` event and a warning ticket.
4. When the batch did not grow for `debounce`, its kickoff is created with
   O_EXCL (`<id>-<NNNNNN>`, the batch number): its body and each step's
   environment (MODULATIO_TRIGGER, MODULATIO_TRIGGER_PATHS) list the paths.
5. Write the state (atomic replace), release the lock.
A daemon killed between 4 and 5 leaves the state behind; step 2 of the next
look sees the kickoff and moves on. So each batch yields at most one kickoff
however many daemons run; a change seen by a look whose state write was lost
is seen again by the next look (the signatures were not saved either).

A disabled trigger is looked at too, but its changes are passed over (the
baseline moves on), as a disabled cron entry passes over its times. Paths the
vault itself changes (plans, cron, tickets, triggers, .modulatio) are never
counted: a trigger would otherwise fire on its own kickoffs.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from modulatio_d.core.errors import BadFile
from modulatio_d.store import atomic, fs, tickets
from modulatio_d.store import triggers as store
from modulatio_d.store.lock import FileLock, lock_path
from modulatio_d.store.refusals import Refusals
from modulatio_d.store.triggers import Overflow, State, Trigger
from modulatio_d.store.trust import Checks
from modulatio_d.store.vault import SETTLE_S, Vault

log = logging.getLogger("modulatio.triggers")
_VAULT_KINDS = {"plans", "cron", "tickets", "triggers"}
_ENV_PATHS_MAX = 32 * 1024
_GLOB = set("*?[")


class TriggerFirer:
    def __init__(self, vault: Vault, events: Callable[..., None],
                 monotonic: Callable[[], float] = time.monotonic, trust: Checks | None = None):
        self.vault = vault
        self.events = events
        self.monotonic = monotonic
        self.trust = trust
        self._generation = trust.generation if trust else 0
        self.refusals = Refusals(vault, events, "trigger")
        self._known: dict[str, tuple[tuple, Trigger | None]] = {}
        self._next_look: dict[str, float] = {}
        self.next_look: float | None = None
        """The monotonic time the next watch is due to be looked at (to wake for it)."""

    def fire_due(self, project: str, now: datetime) -> list[str]:
        made: list[str] = []
        folder = self.vault.project_dir(project) / "triggers"
        if self.trust is not None and not (
                self.trust.folder_ok(self.vault.project_dir(project), project)
                and self.trust.folder_ok(folder, project)):
            return made
        if self.trust is not None and self.trust.generation != self._generation:
            self._generation = self.trust.generation
            self._known.clear()  # judged under another policy: judge every entry again
        items = sorted(self.vault.files(project, "triggers"), key=lambda e: e.name)
        prefix = str(folder) + os.sep
        alive = {item.path for item in items}
        for gone in [p for p in self._known if p.startswith(prefix) and p not in alive]:
            self._known.pop(gone, None)
            self._next_look.pop(gone, None)
            self.refusals.clear(gone)
        for item in items:
            try:
                trigger = self._look(Path(item.path), now)
                if trigger is None or trigger.webhook:
                    continue
                mono = self.monotonic()
                if self._next_look.get(item.path, 0) > mono:
                    self._wake(self._next_look[item.path])
                    continue
                self._next_look[item.path] = mono + trigger.poll
                self._wake(mono + trigger.poll)
                kickoff = self._watch(trigger, now)
                if kickoff:
                    made.append(kickoff)
            except OSError as e:  # the disk, not the entry: again at the next look
                log.warning("trigger %s: %s", item.path, e)
        return made

    def _wake(self, at: float) -> None:
        if self.next_look is None or at < self.next_look:
            self.next_look = at

    def _look(self, path: Path, now: datetime) -> Trigger | None:
        try:
            st = fs.stat_of(path)
        except FileNotFoundError:
            return None
        sig = atomic.signature(st)
        known = self._known.get(str(path))
        if known is not None and known[0] == sig:
            return known[1]
        project = self.vault.project_of(path)
        problem = self.trust.file_problem(path, st) if self.trust is not None else None
        try:
            if problem is not None:
                raise problem
            trigger = store.read_trigger(self.vault, path)
        except BadFile as e:
            if now.timestamp() - st.st_mtime < SETTLE_S and problem is None:
                return None  # maybe half-written by an editor: judged at a later look
            self.refusals.tell(path, project, e, sig)
            trigger = None
        else:
            self.refusals.clear(path)
        self._known[str(path)] = (sig, trigger)
        return trigger

    # -- one watch, under its lock

    def _watch(self, trigger: Trigger, now: datetime) -> str | None:
        lock = FileLock(lock_path(trigger.path))
        if not lock.try_acquire():
            return None  # another daemon is looking at it now
        with lock:
            try:
                state = store.load_state(trigger)
            except (ValueError, TypeError, BadFile) as e:
                log.warning("trigger %s: its state %s is unreadable (%s): starting over",
                            trigger.id, store.state_path(trigger), e)
                state = State()
            before = state.as_json()
            if state.pending and fs.exists(self.vault.plan_path(
                    trigger.project, store.batch_id(trigger, state.seq))):
                _next_batch(state)  # made by a daemon that died before saving the state
            self._grow(trigger, state, _snapshot(self.vault, trigger), now)
            made = None
            quiet = state.last_change is not None and \
                now.timestamp() - state.last_change >= trigger.debounce
            if state.pending and quiet:
                made = self._kickoff(trigger, state, now)
            if state.as_json() != before:
                store.save_state(trigger, state)
            return made

    def _grow(self, trigger: Trigger, state: State, seen: dict[str, list[int]],
              now: datetime) -> None:
        if not state.primed:
            state.seen, state.primed = seen, True
            return
        changed = sorted(p for p in seen.keys() | state.seen.keys()
                         if seen.get(p) != state.seen.get(p))
        state.seen = seen
        if not changed:
            return
        if not trigger.enabled:
            state.pending, state.last_change, state.dropped = [], None, 0
            return
        had_dropped = state.dropped
        pending = dict.fromkeys(state.pending)
        for p in changed:
            if p in pending:
                continue
            if len(pending) >= trigger.capacity:
                state.dropped += 1
                if trigger.overflow is Overflow.DROP_NEWEST:
                    continue
                del pending[next(iter(pending))]
            pending[p] = None
        state.pending = list(pending)
        state.last_change = now.timestamp()
        if state.dropped and not had_dropped:
            self._overflowed(trigger, state, now)

    def _overflowed(self, trigger: Trigger, state: State, now: datetime) -> None:
        reason = (f"trigger {trigger.id}: more than {trigger.capacity} changed paths are "
                  f"pending; {trigger.overflow.value} drops the rest of this batch")
        self.events("trigger_overflow", project=trigger.project, trigger=trigger.id,
                    capacity=trigger.capacity, policy=trigger.overflow.value,
                    batch=store.batch_id(trigger, state.seq))
        ticket = tickets.open_ticket(
            self.vault, trigger.project, trigger.id, tickets.Severity.WARNING, reason,
            f"The watch of {trigger.path} saw more changes than its capacity "
            f"({trigger.capacity}) before the batch was quiet for its debounce. The kickoff "
            f"{store.batch_id(trigger, state.seq)} lists the paths kept and the number "
            f"dropped. Raise capacity:, or watch fewer paths.", {}, now)
        self.events("ticket_opened", project=trigger.project, plan=trigger.id, ticket=ticket,
                    severity="warning", reason=reason, trigger=trigger.id)

    def _kickoff(self, trigger: Trigger, state: State, now: datetime) -> str | None:
        kickoff = store.batch_id(trigger, state.seq)
        paths = state.pending
        env = {"MODULATIO_TRIGGER": trigger.id, "MODULATIO_TRIGGER_PATHS": _env_paths(paths)}
        if len(env["MODULATIO_TRIGGER_PATHS"]) < len("\n".join(paths)):
            env["MODULATIO_TRIGGER_PATHS_TRUNCATED"] = "1"
        body = (trigger.body.rstrip() + "\n\n" if trigger.body.strip() else "") + \
            f"## Changed paths ({len(paths)}" + \
            (f"; {state.dropped} more dropped by overflow" if state.dropped else "") + \
            ")\n\n" + "".join(f"- `{p}`\n" for p in paths)
        keys = {"changed_paths": len(paths), "dropped_paths": state.dropped}
        created = store.write_kickoff(self.vault, trigger, kickoff, keys, body, env, now)
        _next_batch(state)
        if not created:
            return None
        self.events("trigger_fired", project=trigger.project, trigger=trigger.id,
                    plan=kickoff, paths=len(paths), dropped=keys["dropped_paths"])
        return kickoff


def _next_batch(state: State) -> None:
    state.seq += 1
    state.pending, state.last_change, state.dropped = [], None, 0


def _env_paths(paths: list[str]) -> str:
    out, size = [], 0
    for p in paths:
        size += len(p.encode("utf-8", "surrogateescape")) + 1
        if size > _ENV_PATHS_MAX:
            break
        out.append(p)
    return "\n".join(out)


def _snapshot(vault: Vault, trigger: Trigger) -> dict[str, list[int]]:
    """path -> [mtime_ns, size, inode] of every file the patterns match (see the docstring)."""
    out: dict[str, list[int]] = {}
    for pattern in trigger.watch:
        full = pattern if os.path.isabs(pattern) else os.path.join(vault.root, pattern)
        matches = glob.glob(full, recursive=True) if _GLOB & set(pattern) else [full]
        for match in sorted(matches):
            if os.path.isdir(match):
                for top, dirs, files in os.walk(match):
                    dirs[:] = sorted(d for d in dirs if not _internal(vault, os.path.join(
                        top, d)))
                    for name in sorted(files):
                        _add(vault, out, os.path.join(top, name))
                        if len(out) >= store.MAX_WATCHED:
                            return out
            else:
                _add(vault, out, match)
            if len(out) >= store.MAX_WATCHED:
                return out
    return out


def _add(vault: Vault, out: dict[str, list[int]], path: str) -> None:
    if _internal(vault, path):
        return
    try:
        st = os.stat(path)
    except OSError:
        return  # gone between the listing and the stat: seen as removed, or next time
    if os.path.isfile(path):
        out[os.path.normpath(path)] = [st.st_mtime_ns, st.st_size, st.st_ino]


def _internal(vault: Vault, path: str) -> bool:
    """Whether `path` is one of the files the vault's own machinery writes."""
    rel = os.path.relpath(os.path.realpath(path), vault.root)
    if rel.startswith(".."):
        return False
    parts = rel.split(os.sep)
    return parts[0] == vault.meta.name or (len(parts) > 1 and parts[1] in _VAULT_KINDS) \
        or parts[-1].endswith((".lock", ".state.json"))

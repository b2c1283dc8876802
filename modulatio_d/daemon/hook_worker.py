"""The deliverer of one hook: a thread of the hook process (daemon/hook_child.py).

Protocol, per hook:
1. Take the hook's lock (`.modulatio/hooks/<name>.lock`, flock, never waited
   for) and keep it while this process lives and the hook is declared: one
   deliverer per hook across every daemon and host. The others try again each
   poll, so when the holder dies (its flock goes with it) another takes over.
   A lock file deleted or replaced under the holder (still_ours) is let go.
2. Read the cursor (store/hooks.py; a hook without one starts at the end of the
   live log) and the lines after it, a batch at a time, segment after segment.
3. Lines the hook does not want (other events, filtered out, unreadable, and
   the `hook_*` events about this hook itself) only move the cursor. A wanted
   one is delivered (daemon/hook_delivery.py); the cursor is written past it
   only after success: at-least-once, in order.
4. A failed delivery is retried after min(max_delay, delay * 2^(n-1)) * jitter
   (jitter uniform in [0.5, 1)); the count and the time of the next try are in
   the cursor, so a restart keeps them. After `attempts` failures the event is
   appended to the hook's dead-letter file, a `hook_dead_letter` event is logged,
   a warning ticket is opened (one at a time per hook: not while the last is
   open), and delivery goes on with the next event.
5. A replay (`modulatio hooks replay`) asked for while this worker holds the
   lock is a request file it takes and applies before its next batch.

A webhook's secret is read before each batch: one that cannot be had refuses
the hook (told once per message, `hook_refused` in events.jsonl) until fixed.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from modulatio_d.core.errors import BadFile
from modulatio_d.core.hooks import HookSpec, backoff, matches
from modulatio_d.core.times import format_time, parse_time
from modulatio_d.daemon.hook_delivery import deliver
from modulatio_d.store import events as event_log
from modulatio_d.store import fs
from modulatio_d.store import hooks as hook_files
from modulatio_d.store.lock import FileLock
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.hooks")


class Worker(threading.Thread):
    def __init__(self, vault: Vault, spec: HookSpec, events: Callable[..., None],
                 environ: dict[str, str], clock: Callable[[], datetime],
                 poll: Callable[[], float]):
        super().__init__(name=f"hook-{spec.name}", daemon=True)
        self.vault, self.spec, self.events = vault, spec, events
        self.environ, self.clock, self.poll = environ, clock, poll
        self.halt = threading.Event()
        self.lock = FileLock(hook_files.lock_path(vault, spec.name))
        self._told: set[str] = set()
        self._noted: dict | None = None  # the cursor the last holder noted in the lock file
        self._since = ""
        self.delivered = 0

    def stop(self) -> None:
        self.halt.set()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                wait = self.poll()
                try:
                    if self._hold():
                        wait = self._step()
                except Exception as e:  # noqa: BLE001 (one hook's trouble is its own)
                    self._tell(f"hook {self.spec.name}: {type(e).__name__}: {e}",
                               logging.ERROR, exc=e)
                if wait > 0:  # a long backoff is still looked at each poll: a replay
                    self.halt.wait(min(wait, self.poll()))
        finally:
            self.lock.release()

    def _tell(self, message: str, level: int = logging.WARNING, exc: BaseException | None = None,
              event: str | None = None) -> None:
        if message in self._told:
            return
        self._told.add(message)
        log.log(level, "%s", message, exc_info=exc)
        if event:
            self.events(event, hook=self.spec.name, reason=message)

    def _hold(self) -> bool:
        if self.lock.fd is not None:
            gone = self.lock.still_ours()
            if gone is None:
                return True
            log.warning("hook %s: its lock file was %s: letting it go", self.spec.name, gone)
            self.lock.release()
        try:
            fs.mkdirs(hook_files.folder(self.vault))
            if not self.lock.try_acquire():
                return False
        except (BadFile, OSError) as e:
            self._tell(f"hook {self.spec.name}: cannot use its lock: {e}")
            return False
        noted = self.lock.noted().get("cursor")
        self._noted = noted if isinstance(noted, dict) and isinstance(noted.get("offset"), int) \
            else None
        self._since = format_time(self.clock())
        self.lock.note_holder(host=socket.gethostname(), pid=os.getpid(), hook=self.spec.name,
                              since=self._since, cursor=self._noted)
        log.info("hook %s: delivering from this process (%s)", self.spec.name, self.spec.action)
        return True

    def _step(self) -> float:
        """Deliver what is pending; seconds to wait before the next step (0: go on)."""
        name = self.spec.name
        try:
            secret = hook_files.secret(self.spec, self.vault.root, self.environ)
        except hook_files.SecretUnusable as e:
            self._tell(str(e), logging.ERROR, event="hook_refused")
            return self.poll()
        try:
            cursor = hook_files.read_cursor(self.vault, name)
        except BadFile as e:
            self._tell(str(e), logging.ERROR, event="hook_refused")
            return self.poll()
        noted, self._noted = self._noted, None
        if noted is not None and int(noted.get("seq") or 0) > int((cursor or {}).get("seq") or 0):
            log.info("hook %s: the cursor file is behind what its last deliverer noted in the "
                     "lock (a cache of a shared filesystem): going on from the note", name)
            cursor = noted
            self._save(cursor)
        replay = hook_files.take_replay(self.vault, name)
        if replay is not None:
            log.info("hook %s: replaying from %s as asked", name, replay.get("from"))
            cursor = {**replay, "ticket": (cursor or {}).get("ticket"),
                      "seq": (cursor or {}).get("seq")}
            self._save(cursor)
        if cursor is None:
            cursor = hook_files.end_cursor(self.vault.events_path)
            self._save(cursor)
        retry_at = parse_time(cursor.get("retry_at")) if cursor.get("retry_at") else None
        now = self.clock()
        if retry_at is not None and now < retry_at:
            return min(self.poll(), (retry_at - now).total_seconds())
        place = hook_files.locate(self.vault.events_path, cursor)
        if place.skipped:
            self._tell(f"hook {name}: {place.skipped}", event="hook_skipped")
        seg = place.segments[place.index]
        try:
            inode, lines = event_log.read_from(seg, place.offset)
        except FileNotFoundError:
            return self.poll()
        if not lines:
            if place.index + 1 < len(place.segments):  # a rotated file read to its end
                if not self._still(seg):
                    return self.poll()  # a writer may still be finishing a line there
                nxt = hook_files.Place(place.segments, place.index + 1, 0)
                self._save(hook_files.place_cursor(nxt, None, cursor))
                return 0
            if place.offset != cursor["offset"] or inode != cursor.get("inode"):
                self._save({**cursor, "segment": seg.name,
                                                           "inode": inode,
                                                           "offset": place.offset})
            return self.poll()
        return self._batch(cursor, seg, inode, lines, secret)

    def _save(self, cursor: dict) -> None:
        """Write the cursor, one `seq` further, and note it in the lock file too: on a
        shared filesystem the next holder (on another host) may read an older cursor file
        for a while, but reads the note through its own descriptor past the cache."""
        cursor["seq"] = int(cursor.get("seq") or 0) + 1
        hook_files.write_cursor(self.vault, self.spec.name, cursor)
        self.lock.note_holder(host=socket.gethostname(), pid=os.getpid(), hook=self.spec.name,
                              since=self._since, cursor=cursor)

    def _still(self, rotated: Path) -> bool:
        try:
            mtime = fs.stat_of(rotated).st_mtime
        except (OSError, fs.Refused):
            return True  # gone: nothing more can come from it
        return self.clock().timestamp() - mtime >= event_log.ROTATED_STILL_S

    def _batch(self, cursor: dict, seg: Path, inode: int, lines: list, secret: bytes | None,
               ) -> float:
        moved = dict(cursor)
        for end, event in lines:
            if self.halt.is_set():
                break
            here = {"segment": seg.name, "inode": inode, "offset": end,
                    "id": event_log.event_id(event, inode, end) if event else None,
                    "failures": 0, "retry_at": None}
            if event is None or not matches(self.spec, event) or self._own(event):
                moved = {**moved, **here}  # failures counted were of the line after the cursor
                continue
            event_id = here["id"]
            body = json.dumps({**event, "id": event_id}, default=str).encode()
            error = deliver(self.spec, event_id, str(event.get("event")), body, secret,
                            self.environ, self.vault.root)
            if error is None:
                moved = {**moved, **here}
                moved.pop("last_error", None)
                self._save(moved)
                self.delivered += 1
                continue
            return self._failed(moved, here, event, error)
        if moved != cursor:
            self._save(moved)
        return 0

    def _own(self, event: dict) -> bool:
        """An event about this very hook (its own dead letter, say): never handed to it,
        or a hook that fails on everything would feed itself a dead letter forever."""
        return str(event.get("event", "")).startswith("hook_") \
            and event.get("hook") == self.spec.name

    def _failed(self, before: dict, here: dict, event: dict, error: str) -> float:
        """Record a failed delivery of `event` (the line ending at `here`); the wait."""
        name, spec = self.spec.name, self.spec
        failures = int(before.get("failures") or 0) + 1
        now = self.clock()
        if failures < spec.attempts:
            wait = backoff(spec, failures, 0.5 + random.random() / 2)
            log.warning("hook %s: delivery of %s (%s) failed (%d of %d): %s; again in %.1fs",
                        name, here["id"], event.get("event"), failures, spec.attempts, error,
                        wait)
            self._save({
                **before, "failures": failures, "last_error": error,
                "retry_at": format_time(now + timedelta(seconds=wait), micro=True)})
            return wait
        log.error("hook %s: gave up on %s (%s) after %d attempts: %s; see `modulatio hooks "
                  "dead-letters %s`", name, here["id"], event.get("event"), failures, error,
                  name)
        hook_files.add_dead_letter(self.vault, name, {**event, "id": here["id"]}, error,
                                   failures, now)
        ticket = self._ticket(before.get("ticket"), event, error)
        self.events("hook_dead_letter", hook=name, event_id=here["id"],
                    event_type=event.get("event"), attempts=failures, error=error,
                    **({"ticket": ticket[1], "project": ticket[0]} if ticket else {}))
        self._save({**before, **here,
                                                   "ticket": ticket or before.get("ticket")})
        return 0

    def _ticket(self, last: object, event: dict, error: str) -> list | None:
        """[project, ticket id] of the hook's open warning ticket, opened unless one is."""
        if isinstance(last, list) and len(last) == 2 and hook_files.ticket_open(
                self.vault, last[0], last[1]):
            return last
        project = hook_files.ticket_project(self.vault, self.spec, event)
        if project is None:
            log.warning("hook %s: no project to open a ticket in", self.spec.name)
            return None
        try:
            ticket = hook_files.open_ticket(
                self.vault, project, self.spec.name,
                f"hook {self.spec.name} gave up on an event", (
                    f"The hook `{self.spec.name}` ({self.spec.action}) could not deliver "
                    f"event {event.get('id')} ({event.get('event')}) after "
                    f"{self.spec.attempts} attempts. The last error: {error}\n\nIt is in "
                    f".modulatio/hooks/{self.spec.name}.dead.jsonl; later events go on "
                    f"being delivered."), self.clock())
        except (OSError, BadFile) as e:
            log.warning("hook %s: could not open a ticket: %s", self.spec.name, e)
            return None
        self.events("ticket_opened", project=project, plan=f"hook-{self.spec.name}",
                    ticket=ticket, severity="warning",
                    reason=f"hook {self.spec.name} gave up on an event")
        return [project, ticket]

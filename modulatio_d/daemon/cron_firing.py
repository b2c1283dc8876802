"""The daemons' side of cron: turning due entries into kickoff plans, exactly once.

Protocol of `CronFirer.fire_due(project, now)`, once per tick for each entry:
1. A cheap look: the entry is parsed once per file version (stat signature)
   and the first scheduled time after its start (last_fired_for, else
   created_at, else the file's mtime) is remembered. Before that time nothing
   is locked or read.
2. flock(LOCK_EX | LOCK_NB) on `<cron-id>.lock`; busy means another daemon
   is firing this entry right now: leave it to that one.
3. Re-read the entry under the lock and decide (cron.decide) which due times
   fire. A time fires by creating its kickoff plan with O_EXCL (link of a
   complete temp file); the id is a function of the entry id and the instant,
   so "the file exists" means "already fired", by anyone, at any time.
4. Only then advance last_fired_for (atomic.rewrite, that line only) to the
   latest due time, fired or skipped, and release the lock.
A daemon killed between 3 and 4 leaves last_fired_for behind; the next
decision yields the same ids, finds them taken and only advances. So each
scheduled instant yields at most one kickoff, however many daemons run.

An entry, or a cron/ or project folder, that fails the trust checks
(store/trust.py) fires nothing and is told once, like a malformed one.

Jitter (`jitter:`) delays each scheduled instant by a whole number of seconds
that is a function of (entry id, instant) (core/intervals.py): the kickoff id
is still the instant's, and an instant is due once its jittered moment came
(cron.due_until), so every daemon agrees on what is due. Interval schedules
(`every:`) are schedules like any other here.

A disabled entry fires nothing, but its due times are still passed over
(logged as skipped, last_fired_for advanced), so enabling it again does not
fire the times of the disabled period. A malformed entry is never written:
it is skipped, logged once per file version, and left as it is.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

from modulatio_d.core import cron, markdown, peek
from modulatio_d.core.errors import BadFile, FileChanged
from modulatio_d.core.plan import FINAL
from modulatio_d.store import atomic, fs, zones
from modulatio_d.store.atomic import Snapshot
from modulatio_d.store.cron_entries import (
    Entry,
    Overlap,
    parse_entry,
    read_snapshot,
    render_time,
    start_of,
    template_steps,
)
from modulatio_d.store.events import utcnow
from modulatio_d.store.lock import FileLock, lock_path
from modulatio_d.store.refusals import Refusals
from modulatio_d.store.trust import Checks
from modulatio_d.store.vault import SETTLE_S, Vault, decode
from modulatio_d.store.zones import Zones

log = logging.getLogger("modulatio.cron")
_FINAL = {s.value for s in FINAL}
KICKOFF_PRIORITY = 50


@dataclass
class _Known:
    signature: tuple
    entry: Entry | None
    error: BadFile | None
    snapshot: Snapshot | None
    next_due: datetime | None = None
    zone_key: object = None


class CronFirer:
    """Fires the due cron entries of a project; the daemon keeps one and calls
    `fire_due(project, now)` every tick. Holds what it learned about each file,
    keyed by stat signature, and which bad files it already reported."""

    def __init__(self, vault: Vault, events: Callable[..., None],
                 host_zone: tzinfo | None = None, settle_s: float = SETTLE_S,
                 clock: Callable[[], datetime] = utcnow, trust: Checks | None = None):
        self.vault = vault
        self.trust = trust
        self._generation = trust.generation if trust else 0
        self.events = events
        self.host_zone = host_zone if host_zone is not None else zones.host_zone()
        self.settle_s = settle_s
        self.clock = clock  # only for the age of a bad file: due times use `now`
        self.refusals = Refusals(vault, events, "cron")
        self._known: dict[str, _Known] = {}
        self._config: tuple[tuple | None, Zones] | None = None
        self._statuses: dict[str, tuple[tuple, str | None]] = {}

    def fire_due(self, project: str, now: datetime) -> list[str]:
        """Create the kickoff plans due at `now`; returns their ids, oldest first."""
        created: list[str] = []
        alive: set[str] = set()
        if self.trust is not None:
            if self.trust.generation != self._generation:
                self._generation = self.trust.generation
                self._known.clear()  # judged under another policy: judge every entry again
            if not (self.trust.folder_ok(self.vault.project_dir(project), project)
                    and self.trust.folder_ok(self.vault.cron_dir(project), project)):
                return created
        for item in sorted(self.vault.files(project, "cron"), key=lambda e: e.name):
            alive.add(item.path)
            try:
                created += self._tick(project, Path(item.path), now)
            except OSError as e:  # the disk, not the entry: try again next tick
                log.warning("cron entry %s: %s", item.path, e)
            except Exception as e:  # noqa: BLE001 (an entry nobody foresaw costs itself)
                self._crashed(project, Path(item.path), e)
        prefix = str(self.vault.cron_dir(project)) + os.sep
        for gone in [p for p in self._known if p.startswith(prefix) and p not in alive]:
            del self._known[gone]
            self.refusals.clear(gone)
        return created

    # -- per entry

    def _tick(self, project: str, path: Path, now: datetime) -> list[str]:
        known = self._look(path)
        if known is None or known.entry is None:
            return []
        zone = self._zone(project, known.entry)
        if zone is None:
            return []
        if known.zone_key != zone or known.next_due is None:
            start = start_of(known.entry, known.snapshot)
            nxt = cron.next_fires(known.entry.expr, zone, start, 1)
            known.next_due, known.zone_key = (
                nxt[0] + cron.jitter_of(known.entry.id, nxt[0], known.entry.jitter)
                if nxt else None), zone
        if known.next_due is None or now < known.next_due:
            return []  # the common case: nothing due, nothing locked
        lock = FileLock(lock_path(path))
        if not lock.try_acquire():
            log.debug("cron entry %s is being fired by another daemon", path)
            return []
        with lock:
            return self._fire_locked(project, path, now)

    def _fire_locked(self, project: str, path: Path, now: datetime) -> list[str]:
        try:
            snap, entry = read_snapshot(self.vault, path)  # again: another daemon may have fired it
        except FileNotFoundError:
            return []
        except BadFile as e:
            self._judge(project, path, e)
            return []
        zone = self._zone(project, entry)
        if zone is None:
            return []
        start = start_of(entry, snap)
        until = cron.due_until(entry.expr, zone, start, now, entry.id, entry.jitter)
        d = cron.decide(entry.expr, zone, entry.last_fired_for, start, until, entry.catch_up,
                        grace=cron.DEFAULT_GRACE + timedelta(seconds=entry.jitter))
        if d.new_last_fired_for is None:
            return []
        fields = {"project": project, "cron": entry.id}
        created: list[str] = []
        if not entry.enabled:
            self.events("cron_skipped", **fields, reason="disabled",
                     count=len(d.fire) + len(d.skipped) + d.truncated,
                     scheduled_for=render_time(d.new_last_fired_for, zone))
        else:
            try:
                shape = self._shape(entry)
            except BadFile as e:  # the template: fire nothing, keep last_fired_for
                self._judge(project, path, e, key=(snap.signature, self._template_sig(entry)))
                return []
            if str(path) in self.refused:
                self.refusals.clear(path)  # its template was fixed
            for t in d.fire:
                kickoff = self._fire_one(project, entry, zone, t, shape, now)
                if kickoff:
                    created.append(kickoff)
            if d.skipped or d.truncated:
                self.events("cron_missed", **fields, catch_up=entry.catch_up.value,
                         count=len(d.skipped) + d.truncated,
                         listed=[render_time(t, zone) for t in d.skipped],
                         unlisted=d.truncated)
        try:
            self._advance(path, snap, render_time(d.new_last_fired_for, zone))
        except BadFile as e:  # a person saved a malformed entry meanwhile: theirs stays
            self._judge(project, path, e)
        except FileChanged as e:  # saved again and again: the kickoffs stand, retry next tick
            log.warning("%s", e)
        return created

    def _fire_one(self, project: str, entry: Entry, zone: tzinfo, t: datetime,
                  shape: dict[str, object], now: datetime) -> str | None:
        kickoff = cron.kickoff_id(entry.id, t)
        path = self.vault.plan_path(project, kickoff)
        if fs.exists(path):
            return None  # fired already, by us before a crash or by another daemon
        fields = {"project": project, "cron": entry.id, "scheduled_for": render_time(t, zone)}
        if entry.overlap is Overlap.SKIP:
            busy = self._running_kickoff(project, entry.id)
            if busy is not None:
                self.events("cron_skipped", **fields, reason="overlap", blocked_by=busy[0],
                         blocked_status=busy[1])
                return None
        text = kickoff_text(entry, kickoff, render_time(t, zone), shape, now)
        fs.mkdirs(path.parent)
        try:
            atomic.write_new(path, text.encode())
        except FileExistsError:
            return None
        self.events("cron_fired", **fields, plan=kickoff)  # logged by daemon/story.py
        return kickoff

    def _advance(self, path: Path, snap: Snapshot, value: str) -> None:
        """Write last_fired_for, that line only, over whatever a person saved meanwhile."""

        def apply(raw: bytes) -> bytes:
            text = decode(path, raw)
            if raw != snap.raw:  # never splice into a file that does not parse
                parse_entry(markdown.load(path, text), self.vault.project_of(path))
            return markdown.set_keys(text, {"last_fired_for": value}, path).encode()

        atomic.rewrite(path, apply, snap, kind="cron entry")

    def _shape(self, entry: Entry) -> dict[str, object]:
        if entry.steps:
            return {"sub_objectives": [{"run": list(s) if isinstance(s, tuple) else s}
                                       for s in entry.steps]}
        if entry.template is not None:
            return template_steps(self.vault, entry)
        return {"sub_objectives": [entry.objective]}

    def _template_sig(self, entry: Entry) -> tuple | None:
        try:
            return atomic.signature(fs.stat_of(self.vault.plan_path(entry.project,
                                                                    entry.template)))
        except (OSError, TypeError):
            return None

    def _running_kickoff(self, project: str, cron_id: str) -> tuple[str, str] | None:
        """(id, status) of a kickoff of this entry that is not final, if any."""
        # The statuses of final kickoffs are remembered by stat signature, so an
        # entry with years of finished kickoffs costs one stat each, not one read.
        pattern = re.compile(re.escape(cron_id) + r"-\d{8}T\d{4}(?:\d\d)?Z\.md\Z")
        for item in self.vault.files(project, "plans"):
            if not pattern.match(item.name):
                continue
            try:
                sig = atomic.signature(item.stat())
                seen = self._statuses.get(item.path)
                if seen is None or seen[0] != sig:
                    seen = (sig, peek.peek_status(self.vault.read(Path(item.path))[1]))
                    self._statuses[item.path] = seen
                status = seen[1]
            except (OSError, BadFile):
                status = None  # being saved or unreadable: counts as still there
            if status not in _FINAL:
                return item.name[:-3], status or "draft"
        return None

    # -- caches and reporting

    def _look(self, path: Path) -> _Known | None:
        try:
            st = fs.stat_of(path)
        except FileNotFoundError:
            return None
        sig = atomic.signature(st)
        known = self._known.get(str(path))
        if known is not None and known.signature == sig:
            return known
        project = self.vault.project_of(path)
        untrusted = self.trust.file_problem(path, st) if self.trust is not None else None
        if untrusted is not None:  # owner and mode are in the signature: told once each
            self.refusals.tell(path, project, untrusted, (sig, self._generation))
            known = _Known(sig, None, untrusted, None)
            self._known[str(path)] = known
            return known
        try:
            snap, entry = read_snapshot(self.vault, path)
        except FileNotFoundError:
            return None
        except BadFile as e:
            if not self._judge(project, path, e, stat_sig=sig):
                return None
            known = _Known(sig, None, e, None)
        else:
            self.refusals.clear(path)
            known = _Known(snap.signature, entry, None, snap)
        self._known[str(path)] = known
        return known

    def _crashed(self, project: str, path: Path, error: Exception) -> None:
        """An entry whose firing raised what nobody foresaw: refused until it changes."""
        try:
            sig: object = atomic.signature(path.stat())
        except OSError:
            sig = None
        if not self.refusals.told(path, sig):
            log.error("cron entry %s raised %s", path, error, exc_info=error)
        self._known[str(path)] = _Known(sig, None, None, None)  # type: ignore[arg-type]
        self.refusals.tell(path, project, BadFile(
            path, f"firing it raised {type(error).__name__}: {error}; fix the entry or "
                  f"report the bug"), sig)

    def _judge(self, project: str, path: Path, error: BadFile, key: tuple | None = None,
               stat_sig: tuple | None = None) -> bool:
        """Report a bad file once per version; False when it is too fresh to judge."""
        try:
            st = fs.stat_of(path)
        except FileNotFoundError:
            return False
        if self.clock().timestamp() - st.st_mtime < self.settle_s:
            return False  # maybe half-written by an editor: look again next tick
        self.refusals.tell(path, project, error, key or stat_sig or atomic.signature(st))
        return True

    @property
    def refused(self) -> dict[str, str]:
        """path -> message of every bad file seen, for status and validate."""
        return self.refusals.current

    def _zone(self, project: str, entry: Entry) -> tzinfo | None:
        """The entry's zone; None (and reported once) when the vault config is bad."""
        if entry.timezone is not None:  # the config is not even looked at
            return Zones(self.host_zone).resolve(entry.timezone)
        try:
            sig: tuple | None = atomic.signature(fs.stat_of(self.vault.config_path))
        except FileNotFoundError:
            sig = None
        if self._config is None or self._config[0] != sig:
            self._config = (sig, Zones.read(self.vault, self.host_zone))
        try:
            return self._config[1].resolve(None)
        except BadFile as e:
            # Entries without a timezone of their own wait until the config is fixed.
            self.refusals.tell(self.vault.config_path, project, e, sig, kind="config")
            return None


def kickoff_text(entry: Entry, kickoff: str, scheduled_for: str, shape: dict[str, object],
                 now: datetime) -> str:
    """The kickoff plan: a plan file like `plan new` writes, plus cron and scheduled_for."""
    keys: dict[str, object] = {
        "id": kickoff, "title": entry.objective,
        "status": "approved" if entry.approve else "draft",
        "priority": shape.get("priority", KICKOFF_PRIORITY),
        "cron": entry.id, "scheduled_for": scheduled_for, "created_at": now,
    }
    if entry.approve:
        keys["approved_at"] = now
    keys.update({k: v for k, v in shape.items() if k != "priority"})
    keys.update({"current_index": 0, "reflection_log": []})
    body = entry.body if entry.body.strip() else "\n"
    return markdown.set_keys("---\n---\n", keys) + body



"""What the `cron` commands do (add, list, remove, enable, disable, next), without argparse.

Every entry is read and checked by store/cron_entries.py and fires in the zone
store/zones.py resolves. `entry_rows` is the one view of entries as rows, for
`cron list` and for `status`. `cron remove` deletes an entry under its lock, so
never while a daemon fires it; the lock file stays (it is never deleted: the
next claimer must lock the same inode) and so do the kickoff plans.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from modulatio_d.core import cron, markdown, names
from modulatio_d.core.cron import CatchUp
from modulatio_d.core.errors import BadFile, UsageError
from modulatio_d.core.times import format_time
from modulatio_d.store import atomic, cron_entries, fs, zones
from modulatio_d.store.cron_entries import MAX_ID_LEN, Entry, Overlap, render_time, start_of
from modulatio_d.store.lock import FileLock, lock_path
from modulatio_d.store.plan_file import read_plan
from modulatio_d.store.vault import Vault, create_numbered, decode, next_number
from modulatio_d.store.zones import Zones, vault_zone

Refused = Callable[[str, str | None, str, BadFile], None]
"""Told about a file that cannot be used: (path, project, kind, error)."""


# --- rows -------------------------------------------------------------------------

def entry_rows(vault: Vault, now: datetime, host: tzinfo, project: str | None = None,
               refused: Refused | None = None) -> list[dict]:
    """Every entry (of one project, or all) as a plain row, for `cron list` and `status`.

    An entry that does not parse is a row with `valid: false` and its `error`, or,
    given `refused`, told to it instead (so is a refused vault config). An entry
    without a zone of its own while the vault config is refused is a row with
    `valid: false` and the reason. Times are on the entry's wall clock.
    """
    rows = []
    resolver: Zones | None = None
    for p in [project] if project else vault.projects():
        for item in sorted(vault.files(p, "cron"), key=lambda e: e.name):
            if resolver is None:  # the config read once, and only for a vault with entries
                resolver = Zones.read(vault, host)
                if resolver.error is not None and refused is not None:
                    refused(str(vault.config_path), None, "config", resolver.error)
            row = _row(vault, p, Path(item.path), now, resolver, refused)
            if row is not None:
                rows.append(row)
    return rows


def _row(vault: Vault, project: str, path: Path, now: datetime, resolver: Zones,
         refused: Refused | None) -> dict | None:
    try:
        snap, entry = cron_entries.read_snapshot(vault, path)
        if entry.template is not None:
            cron_entries.template_steps(vault, entry)
    except FileNotFoundError:
        return None  # removed between listing and reading
    except BadFile as e:
        if refused is not None:
            refused(str(path), project, "cron", e)
            return None
        return {"id": path.stem, "project": project, "valid": False, "error": str(e),
                "path": str(path)}
    row = {"id": entry.id, "project": project, "valid": True, "schedule": entry.schedule,
           "timezone": None, "timezone_from": None, "enabled": entry.enabled,
           "catch_up": entry.catch_up.value, "overlap": entry.overlap.value,
           "approve": entry.approve, "objective": entry.objective, "last_fired_for": None,
           "next_fire": None, "next_fire_ts": None, "due_since": None, "path": str(path)}
    try:
        zone = resolver.resolve(entry.timezone)
    except BadFile as e:
        row.update(valid=False, error=f"the vault config is refused, so there is no time "
                                      f"zone to fire in: {e}")
        return row
    row.update(timezone=str(getattr(zone, "key", zone)),
               timezone_from=resolver.source(entry.timezone))
    if entry.last_fired_for is not None:
        row["last_fired_for"] = render_time(entry.last_fired_for, zone)
    if entry.enabled:
        start = start_of(entry, snap)
        first = cron.next_fires(entry.expr, zone, start, 1)
        if first and first[0] <= now:
            row["due_since"] = render_time(first[0], zone)
        nxt = cron.next_fires(entry.expr, zone, max(now, start), 1)
        if nxt:
            at = nxt[0] + cron.jitter_of(entry.id, nxt[0], entry.jitter)
            row.update(next_fire=render_time(at, zone), next_fire_ts=at.timestamp())
    return row


# --- next -------------------------------------------------------------------------

@dataclass(frozen=True)
class Preview:
    entry: Entry
    zone: tzinfo
    times: list[datetime]

    def fires(self) -> list[dict]:
        """Each fire: its moment, the kickoff it makes, and for an entry with jitter the
        scheduled time the moment is jittered from (the kickoff's id names it)."""
        rows = []
        for t in self.times:
            at = t + cron.jitter_of(self.entry.id, t, self.entry.jitter)
            row = {"local": at.isoformat(), "utc": format_time(at),
                   "kickoff": cron.kickoff_id(self.entry.id, t)}
            if self.entry.jitter:
                row["scheduled_for"] = format_time(t)
            rows.append(row)
        return rows


def preview(vault: Vault, entry_id: str, after: datetime, n: int, host: tzinfo) -> Preview:
    """The next `n` fire times of an entry after `after`, in its zone."""
    _, path = vault.find("cron", entry_id)
    entry = cron_entries.read_entry(vault, path)
    zone = Zones.read(vault, host).resolve(entry.timezone)
    return Preview(entry, zone, cron.next_fires(entry.expr, zone, after, n))


# --- add, enable, remove -------------------------------------------------------------

def next_cron_number(vault: Vault, project: str) -> int:
    """One more than the highest number any entry of the project ever had.

    Lock files stay after `cron remove` and kickoff plans outlive their entry,
    so a removed entry's id, and with it its kickoff ids, is never reused.
    """
    return next_number(f"{project}-C-", (vault.cron_dir(project), vault.plans_dir(project),
                                         vault.records_dir(project)))


def add_entry(vault: Vault, project: str, objective: str, schedule: str | None,
              now: datetime, timezone: str | None = None, steps: list[str] | None = None,
              template: str | None = None, catch_up: str = "latest", overlap: str = "skip",
              approve: bool = True, host_zone: tzinfo | None = None,
              timing: dict[str, str | None] | None = None) -> Entry:
    """Create `<PROJECT>/cron/<PROJECT>-C-<NNN>.md`; every argument is checked first.

    Without `timezone` the entry is given the zone in effect now (the vault
    config's, else the host's), so that it keeps firing at the same wall-clock
    time when the vault is opened on a host in another zone. `timing`: every, start,
    jitter as given on the command line (an interval replaces `schedule`).
    """
    names.check("project code", project)
    if not objective.strip():
        raise UsageError("the objective is empty: say what each kickoff is for")
    timed = _timing(timing or {}, schedule, now)
    if schedule is not None:
        try:
            cron.parse_schedule(schedule)
        except ValueError as e:
            raise UsageError(f"--schedule: {e}") from None
    if timezone is not None:
        try:
            cron.parse_zone(timezone)
        except ValueError as e:
            raise UsageError(f"--timezone: {e}") from None
    else:
        host = host_zone if host_zone is not None else zones.host_zone()
        timezone = getattr(Zones(host, vault_zone(vault)).resolve(None), "key", None)
        if timezone is not None and cron.find_zone(timezone) is None:
            timezone = None  # a tzfile path: leave it to the host at fire time
    _check_options(vault, project, steps, template, catch_up, overlap)
    keys: dict[str, object] = {"objective": objective.strip()}
    if schedule is not None:
        keys["schedule"] = schedule.strip()
    keys.update(timed)
    if timezone is not None:
        keys["timezone"] = timezone
    if steps:
        keys["steps"] = list(steps)
    if template is not None:
        keys["template"] = template
    keys.update({"enabled": True, "catch_up": catch_up, "overlap": overlap,
                 "approve": approve, "created_at": now})

    def text_for(entry_id: str) -> str:
        if len(entry_id) > MAX_ID_LEN:
            raise UsageError(f"project code {project!r} is too long for cron ids")
        return cron_entries.entry_text({"id": entry_id, **keys})

    _, path = create_numbered(vault.cron_dir(project), f"{project}-C-", 3,
                              next_cron_number(vault, project), text_for)
    return cron_entries.read_entry(vault, path)


def _timing(timing: dict[str, str | None], schedule: str | None,
            now: datetime) -> dict[str, object]:
    """every/start/jitter checked as the entry's reader will check them."""
    from modulatio_d.core.checks import parse_duration
    from modulatio_d.core.times import parse_time

    out: dict[str, object] = {}
    if timing.get("every") is not None:
        if schedule is not None:
            raise UsageError("give --schedule or --every, not both")
        start = parse_time(timing["start"]) if timing.get("start") else now.replace(
            microsecond=0)
        if start is None:
            raise UsageError(f"--start {timing['start']!r} is not an ISO 8601 time")
        try:
            cron.every_expr(parse_duration(timing["every"]), start)
        except ValueError as e:
            raise UsageError(f"--every: {e}") from None
        out.update(every=timing["every"], start=start)
    elif timing.get("start") is not None:
        raise UsageError("--start goes with --every")
    elif schedule is None:
        raise UsageError("give --schedule or --every")
    if timing.get("jitter") is not None:
        try:
            parse_duration(timing["jitter"])
        except ValueError as e:
            raise UsageError(f"--jitter: {e}") from None
        out["jitter"] = timing["jitter"]
    return out


def _check_options(vault: Vault, project: str, steps: list[str] | None, template: str | None,
                   catch_up: str, overlap: str) -> None:
    if steps and template:
        raise UsageError("give --step or --template, not both")
    if any(not s.strip() for s in steps or []):
        raise UsageError("--step: a command is empty")
    try:
        CatchUp(catch_up)
    except ValueError:
        raise UsageError(f"--catch-up: {catch_up!r} is not one of "
                         f"{', '.join(CatchUp)}") from None
    try:
        Overlap(overlap)
    except ValueError:
        raise UsageError(f"--overlap: {overlap!r} is not one of {', '.join(Overlap)}") from None
    if template is not None:
        names.check("plan id", template)
        if not fs.exists(vault.plan_path(project, template)):
            raise UsageError(f"--template: there is no plan {project}/plans/{template}.md")
        read_plan(vault, vault.plan_path(project, template))  # a bad template: BadFile, exit 1


def set_enabled(vault: Vault, entry_id: str, enabled: bool) -> tuple[Entry, bool]:
    """Rewrite only the `enabled` line; (entry, whether the file changed)."""
    _, path = vault.find("cron", entry_id)
    snap, text = vault.read(path)
    entry = cron_entries.parse_entry(markdown.load(path, text), vault.project_of(path))
    if entry.enabled is enabled:
        return entry, False

    def apply(raw: bytes) -> bytes:
        current = decode(path, raw)
        cron_entries.parse_entry(markdown.load(path, current), vault.project_of(path))
        return markdown.set_keys(current, {"enabled": enabled}, path).encode()

    atomic.rewrite(path, apply, snap, kind="cron entry")
    return cron_entries.read_snapshot(vault, path)[1], True


def remove(vault: Vault, entry_id: str, wait_s: float = 5.0) -> Path:
    """Delete the entry file under its lock; the lock file and the kickoff plans stay."""
    _, path = vault.find("cron", entry_id)
    lock = FileLock(lock_path(path))
    if not lock.acquire(time.monotonic() + wait_s):  # a daemon firing it takes milliseconds
        raise UsageError(f"cron entry {entry_id} stays locked by a daemon; try again")
    with lock:
        fs.unlink(path)
        atomic.fsync_dir(path.parent)
    return path

"""Cron entry files: reading and checking them, and writing a new one.

Files:
    <PROJECT>/cron/<cron-id>.md     the entry: people's keys, plus last_fired_for (the daemon's)
    <PROJECT>/cron/<cron-id>.lock   its lock (flock), never deleted, not even by `cron remove`
    <PROJECT>/plans/<cron-id>-<YYYYMMDDTHHMMZ>.md   a kickoff: one per scheduled instant

The daemons' side, firing due entries, is daemon/cron_firing.py; what the
`cron` commands do is ops/cron.py; the zone an entry fires in, store/zones.py.
"""

from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from modulatio_d.core import checks, cron, markdown, names, yaml_text
from modulatio_d.core.cron import CatchUp
from modulatio_d.core.errors import BadFile, FileFault
from modulatio_d.core.markdown import Document
from modulatio_d.core.times import parse_time
from modulatio_d.store.atomic import Snapshot
from modulatio_d.store.vault import Vault

KEYS = ("id", "objective", "schedule", "every", "start", "jitter", "timezone", "steps",
        "template", "enabled", "catch_up", "overlap", "approve", "created_at",
        "last_fired_for")
"""Every key an entry may have (besides people's own, which start with `x-` or `x_`)."""

DAEMON_KEYS = ("last_fired_for",)
"""The keys the daemons write; every other key is people's."""

_STAMP_LEN = len("-YYYYMMDDTHHMMSSZ")
MAX_ID_LEN = 200 - _STAMP_LEN
"""So that every kickoff id is still a valid plan name (at most 200 characters)."""
_TEMPLATE_KEYS = ("budget", "priority", "cwd", "reflector")
"""Copied from a template plan into each kickoff, besides its sub_objectives."""


class Overlap(enum.StrEnum):
    """What a due time does while an earlier kickoff of the same entry is not final."""

    SKIP = "skip"
    """Do not fire; log the time as skipped (reason overlap) and move past it."""
    ALLOW = "allow"
    """Fire anyway: kickoffs of one entry may run side by side."""


@dataclass(frozen=True)
class Entry:
    path: Path
    project: str
    id: str
    objective: str
    schedule: str
    """As written (`@daily`, `0 6 * * 1-5`)."""
    expr: str
    """The schedule as 5 fields, from cron.parse_schedule."""
    timezone: str | None
    """The entry's own zone; None means the vault config's, else the host's."""
    steps: tuple[str | tuple[str, ...], ...]
    template: str | None
    enabled: bool
    catch_up: CatchUp
    overlap: Overlap
    approve: bool
    created_at: datetime | None
    last_fired_for: datetime | None
    body: str
    jitter: float = 0.0
    """Seconds: each scheduled instant fires up to this much later (core/intervals.py)."""


# --- reading ------------------------------------------------------------------

def read_entry(vault: Vault, path: Path) -> Entry:
    """The entry at `path`, checked completely (its template plan too); raises BadFile."""
    _, entry = read_snapshot(vault, path)
    if entry.template is not None:
        template_steps(vault, entry)
    return entry


def read_snapshot(vault: Vault, path: Path) -> tuple[Snapshot, Entry]:
    snap, text = vault.read(path)
    return snap, parse_entry(markdown.load(path, text), vault.project_of(path))


def parse_entry(doc: Document, project: str) -> Entry:
    """An Entry from a loaded document; every problem names the line of its key."""
    data, fail = doc.data, doc.fault()
    for key in map(str, data):
        if key not in KEYS and not key.startswith(("x-", "x_")):
            close = difflib.get_close_matches(key, KEYS, n=1)
            fail(f"unknown key {key!r}", key,
                 f"did you mean {close[0]}?" if close else
                 "use " + ", ".join(KEYS) + "; keys of your own start with x-")
    stem = doc.path.stem
    entry_id = data.get("id", stem)
    if not isinstance(entry_id, str) or not names.is_valid(entry_id) \
            or entry_id.startswith("-") or len(entry_id) > MAX_ID_LEN:
        fail(f"id {entry_id!r} is not a valid cron id", "id",
             f"use letters, digits, '_', '-' and '.', starting with a letter, digit or '_', "
             f"at most {MAX_ID_LEN} characters")
    if entry_id != stem:
        fail(f"id {entry_id!r} differs from the file name {stem!r}", "id",
             f"set id: {stem} or rename the file to {entry_id}.md")
    objective = data.get("objective")
    if not isinstance(objective, str) or not objective.strip():
        fail("objective is missing" if objective is None else "objective must be a non-empty text",
             "objective" if "objective" in data else None,
             "write what each kickoff is for, e.g. objective: Send the weekly report")
    schedule, expr = _schedule(data, fail)
    jitter = 0.0
    if data.get("jitter") is not None:
        try:
            jitter = checks.parse_duration(data["jitter"])
        except ValueError as e:
            fail(f"jitter: {e}", "jitter", "e.g. jitter: 5m (each time fires up to 5 min late)")
        if jitter > 86400:
            fail("jitter is more than a day", "jitter", "use at most 1d")
    zone_name = data.get("timezone")
    if zone_name is not None:
        if not isinstance(zone_name, str):
            fail(f"timezone {zone_name!r} must be an IANA name such as Europe/Berlin", "timezone")
        try:
            cron.parse_zone(zone_name)
        except ValueError as e:
            fail(f"timezone: {e}", "timezone")
    steps = _parse_steps(doc, data.get("steps"), fail)
    template = data.get("template")
    if template is not None and (not isinstance(template, str) or not names.is_valid(template)):
        fail(f"template {template!r} is not a plan id", "template",
             "name a plan of this project, e.g. template: SALES-P-001")
    if steps and template is not None:
        fail("steps and template are both given", "template",
             "keep one: the kickoff takes its sub-objectives from either")
    created_at = _time(data, "created_at", fail)
    last = _time(data, "last_fired_for", fail, "the daemon writes it; delete the line to "
                 "count from created_at")
    return Entry(
        path=doc.path, project=project, id=entry_id, objective=objective.strip(),
        schedule=schedule, expr=expr, timezone=zone_name, steps=steps, template=template,
        enabled=_bool(data, "enabled", fail), approve=_bool(data, "approve", fail),
        catch_up=_choice(data, "catch_up", CatchUp, CatchUp.LATEST, fail),
        overlap=_choice(data, "overlap", Overlap, Overlap.SKIP, fail),
        created_at=created_at, last_fired_for=last, body=doc.body, jitter=jitter,
    )


def _schedule(data: dict, fail: FileFault) -> tuple[str, str]:
    """(the schedule as shown, its expression for core/cron.py) from schedule or every."""
    if data.get("every") is not None or data.get("start") is not None:
        if "schedule" in data:
            fail("schedule and every are both given", "every", "keep one of them")
        try:
            seconds = checks.parse_duration(data.get("every"))
        except ValueError as e:
            fail(f"every: {e}", "every" if "every" in data else "start",
                 "e.g. every: 90m with start: 2026-01-05T06:00:00Z")
        start = _time(data, "start", fail) or _time(data, "created_at", fail)
        if start is None:
            fail("every needs a start time", "every",
                 "add start: 2026-01-05T06:00:00Z (the first time it fires)")
        try:
            expr = cron.every_expr(seconds, start)
        except ValueError as e:
            fail(str(e), "every")
        return f"every {data['every']}", expr
    schedule = data.get("schedule")
    if not isinstance(schedule, str):
        fail("schedule is missing" if schedule is None else
             f"schedule {schedule!r} must be a text of 5 fields such as \"0 6 * * *\"",
             "schedule" if "schedule" in data else None,
             'quote it: schedule: "0 6 * * *", or an interval: every: 90m')
    try:
        return schedule, cron.parse_schedule(schedule)
    except ValueError as e:
        fail(str(e), "schedule")


def _parse_steps(doc: Document, raw: object, fail: FileFault) -> tuple[str | tuple[str, ...], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        fail("steps must be a list of commands, one '- ' line each", "steps",
             "e.g. steps: [\"make report\"]; leave steps out to run the objective")
    steps: list[str | tuple[str, ...]] = []
    for i, item in enumerate(raw):
        line = doc.line_of_item(raw, i)
        if isinstance(item, str) and item.strip():
            steps.append(str(item))
        elif isinstance(item, list) and item and all(
                isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in item):
            steps.append(tuple(str(a) for a in item))
        else:
            fail(f"step {i + 1} must be a command: a text (run by sh -c) or a list of "
                 f"arguments, not {_kind(item)}", "steps", line=line,
                 hint="a step with its own title, timeout or agent belongs in a template plan")
    return tuple(steps)


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "an empty list" if not value else "a list holding more than texts"
    if isinstance(value, str):
        return "an empty text"
    if value is None:
        return "nothing"
    return f"{value!r}"


def _bool(data: dict, key: str, fail: FileFault) -> bool:
    value = data.get(key, True)
    if not isinstance(value, bool):
        fail(f"{key} {value!r} must be true or false", key,
             "yes, no, on and off are text in YAML 1.2")
    return value


def _choice(data: dict, key: str, kind: type[enum.StrEnum], default, fail: FileFault):
    value = data.get(key, default.value)
    try:
        return kind(str(value)) if value is not None else default
    except ValueError:
        fail(f"{key} {value!r} is not one of {', '.join(kind)}", key)


def _time(data: dict, key: str, fail: FileFault, hint: str = "") -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    parsed = parse_time(value)
    if parsed is None:
        fail(f"{key} {str(value)!r} is not a time", key,
             hint or "write an ISO time such as 2025-01-06T06:00:00+01:00")
    return parsed


def template_steps(vault: Vault, entry: Entry) -> dict[str, object]:
    """Keys a kickoff copies from the entry's template plan; raises BadFile naming the entry."""
    from modulatio_d.store.plan_file import read_plan

    assert entry.template is not None
    where = markdown.line_of(_entry_data(vault, entry), "template", 1)
    path = vault.plan_path(entry.project, entry.template)
    try:
        plan = read_plan(vault, path).plan
    except FileNotFoundError:
        raise BadFile(entry.path, f"template {entry.template!r}: there is no plan "
                      f"{entry.project}/plans/{entry.template}.md", where,
                      "create the template plan (as a draft) or fix the id") from None
    except BadFile as e:
        raise BadFile(entry.path, f"template {entry.template!r} is not a valid plan: {e}",
                      where) from None
    keys: dict[str, object] = {"sub_objectives": yaml_text.plain(plan.data["sub_objectives"])}
    for key in _TEMPLATE_KEYS:
        if plan.data.get(key) is not None:
            keys[key] = yaml_text.plain(plan.data[key])
    return keys


def _entry_data(vault: Vault, entry: Entry) -> dict:
    try:
        return markdown.load(entry.path, vault.read(entry.path)[1]).data
    except (BadFile, OSError):
        return {}


def entry_text(keys: dict[str, object]) -> str:
    """A new entry file holding `keys` (people's), then the daemons' last_fired_for."""
    text = markdown.set_keys("---\n---\n", keys)
    return text.replace("\n---\n", "\n# written by the daemons: the latest scheduled time "
                        "fired or passed over\nlast_fired_for: null\n---\n", 1)


# --- times ---------------------------------------------------------------------

def start_of(entry: Entry, snap: Snapshot) -> datetime:
    """Due times are those after this: last_fired_for, else created_at, else the file's mtime."""
    if entry.last_fired_for is not None:
        return entry.last_fired_for
    if entry.created_at is not None:
        return entry.created_at
    return datetime.fromtimestamp(snap.signature[2] / 1e9, UTC)


def render_time(value: datetime, zone: tzinfo) -> str:
    """An instant as ISO 8601 on the entry's wall clock, with its offset."""
    return value.astimezone(zone).isoformat()

"""Due times of a cron entry: pure functions of their arguments, no I/O, no clock.

Rules:
- A schedule is 5 fields (minute hour day-of-month month day-of-week) in the
  syntax croniter 7 accepts (lists, ranges, steps, month and weekday names,
  L W #), or @hourly @daily @midnight @weekly @monthly @yearly @annually.
  Seconds and years (6 or 7 fields) are refused, and so are H and R: R is
  random, so the schedule would change each time it is read.
- A schedule is evaluated on the wall clock of the entry's zone, so 06:00
  stays 06:00 across DST. Each wall-clock time fires at most once:
  - a time skipped by spring-forward (02:30 in Europe/Berlin on the last
    Sunday of March) fires once, at the first valid moment after it (03:00);
    several skipped times that land on that moment fire once;
  - a time repeated by fall-back (02:30 on the last Sunday of October) fires
    once, at its first occurrence (02:30+02:00); its repeat does not fire.
  So `0 * * * *` keeps one fire per real hour on spring-forward (01:00+01:00
  then 03:00+02:00) and leaves a two-hour gap on fall-back (02:00+02:00 then
  03:00+01:00). croniter itself fires the repeated time twice; this module
  asks croniter only for naive wall-clock times and maps them to instants.
- Due times are those in (last_fired_for or created_at, now]. `catch_up`
  picks which of them fire (latest, all up to MAX_CATCH_UP, or skip); the
  others are reported as skipped. The caller stores new_last_fired_for, so a
  second call with it never fires the same time again.
- Exactly-once across daemons is the caller's part: kickoff_id() gives each
  scheduled instant its own plan id, created with O_EXCL.
- Which zone an entry fires in (its own, the vault config's, the host's) is
  decided by store/zones.py, which reads the config and the host.
- An interval schedule (`every: 90m` from a start time) is written here as
  `@every <seconds> <start as Unix seconds>`: its instants are start + k * every
  (k >= 0), absolute times that no zone or DST moves; the functions below take
  it wherever they take 5 fields.
- Jitter (`jitter_of`): an instant t fires at t + a delay in [0, jitter) that is
  a function of (entry id, t), so every daemon computes the same moment and the
  kickoff id (from t) stays the same: exactly once is unchanged. `due_until` is
  the latest instant up to which every scheduled time's jittered moment has come.
Instants are compared in UTC: Python compares two datetimes that share a
tzinfo by wall clock alone, ignoring fold.
"""

from __future__ import annotations

import difflib
import enum
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from modulatio_d.core import intervals, names, schedule_words
from modulatio_d.core.intervals import every_expr, jitter_of  # noqa: F401 (the cron API)


def _croniter():
    """croniter, imported when a cron expression is first read or walked: a daemon of a
    vault without cron entries never needs it, and its import runs `file` on the
    interpreter (platform.architecture) and costs about as much as the rest of the
    cron code."""
    import croniter

    return croniter


MAX_CATCH_UP = 100
"""Most kickoffs one decision creates with catch_up `all`, and most skipped times it lists."""

MAX_COUNTED = 10_000
"""Decision.truncated stops counting here: a value this large means at least this many."""

DEFAULT_GRACE = timedelta(seconds=90)
"""How late a due time may be noticed and still count as on time for catch_up `skip`.
The daemon ticks every 30 s, so a due time is normally seen within 30 s; 90 s
also forgives two late ticks (a slow disk, a step finishing) before the time
counts as missed by downtime."""

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
_USE = "use 5 fields: minute hour day-of-month month day-of-week"
_HASHED = re.compile(r"[hr](?:\(|/|$)")
_SECOND = timedelta(seconds=1)
_MINUTE = timedelta(minutes=1)


class CatchUp(enum.StrEnum):
    """What a decision fires when more than one scheduled time is due."""

    LATEST = "latest"
    """Fire the most recent due time; skip the older ones."""
    ALL = "all"
    """Fire every due time, at most MAX_CATCH_UP (the most recent); skip the older ones."""
    SKIP = "skip"
    """Fire the most recent due time only if it is on time (within the grace); skip the rest."""


@dataclass(frozen=True)
class ScheduledTimes:
    times: list[datetime]
    """Aware, in the entry's zone, strictly increasing."""
    cut: bool
    """True when more times in the window were left out because of the limit."""


@dataclass(frozen=True)
class Decision:
    fire: list[datetime]
    """Times to create kickoffs for, oldest first."""
    skipped: list[datetime]
    """Due times not fired, oldest first; at most `cap` of them, the most recent."""
    truncated: int
    """Due times older still, neither fired nor listed (counted up to MAX_COUNTED)."""
    new_last_fired_for: datetime | None
    """The latest due time, fired or skipped; None when nothing was due."""


def due_until(schedule: str, zone: tzinfo, after: datetime, now: datetime, cron_id: str,
              jitter_s: float) -> datetime:
    """The latest `until` <= now such that every scheduled time in (after, until] has its
    jittered moment at or before `now`: what decide() may look at."""
    if jitter_s <= 0:
        return now
    window_start = max(_utc(after, "after"), _utc(now, "now") - timedelta(seconds=jitter_s))
    for t in scheduled_times(schedule, zone, window_start, now, MAX_COUNTED).times:
        if t + intervals.jitter_of(cron_id, t, jitter_s) > now:
            return t - _SECOND
    return now


def parse_schedule(expr: str) -> str:
    """Return `expr` as 5 fields separated by single spaces, or raise ValueError.

    Modulatio's schedule words (`daily 06:00`, `weekly mon 09:00`, `30m`) are an alias
    form: core/schedule_words.py translates them. An interval (`@every`, core/intervals.py)
    is returned as it is."""
    text = expr.strip()
    if intervals.is_every(text):
        return text
    text = schedule_words.translate(expr) or text
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise ValueError(
                f'schedule "{expr}" is not supported: use {", ".join(ALIASES)}, or 5 fields: '
                "minute hour day-of-month month day-of-week"
            )
        return ALIASES[text.lower()]
    fields = text.split()
    if len(fields) in (6, 7):
        raise ValueError(
            f'schedule "{expr}" has {len(fields)} fields: '
            f"seconds and years are not supported; {_USE}"
        )
    if len(fields) != 5:
        raise ValueError(f'schedule "{expr}" has {len(fields)} fields; {_USE}')
    norm = " ".join(fields)
    problem = _problem(fields)
    if problem:
        raise ValueError(f'schedule "{expr}" is not a valid cron expression: {problem}; {_USE}')
    # strict=True finds days that no named month has ("0 0 31 2 *"); it ignores
    # the weekday field, so it only speaks when that field is unrestricted.
    croniter = _croniter().croniter
    if fields[4] in ("*", "?") and not croniter.is_valid(norm, strict=True):
        expanded, _ = croniter.expand(norm)
        days = min(d for d in expanded[2] if isinstance(d, int))
        months = ",".join(str(m) for m in expanded[3])
        raise ValueError(
            f'schedule "{expr}" never fires: day-of-month {days} does not occur in month {months}'
        )
    return norm


def _problem(fields: list[str]) -> str | None:
    """What is wrong with 5 fields, naming the first bad field; None if nothing."""
    for (name, _, _), text in zip(_FIELDS, fields, strict=True):
        if any(_HASHED.match(item) for item in text.lower().split(",")):
            return f'{name} "{text}" uses H or R (hashed, random), which is not supported'
    croniter = _croniter().croniter
    if croniter.is_valid(" ".join(fields)):
        return None
    for index, (name, low, high) in enumerate(_FIELDS):
        probe = ["*"] * 5
        probe[index] = fields[index]
        if croniter.is_valid(" ".join(probe)):
            continue
        for item in fields[index].split(","):
            values, _, step = item.partition("/")
            for value in re.findall(r"\d+", values):
                if not low <= int(value) <= high:
                    return f"{name} {value} is out of range {low}-{high}"
            if step.isdigit() and int(step) == 0:
                return f'{name} step "{item}" must be at least 1'
        return f'{name} "{fields[index]}" is not valid'
    return "croniter cannot read it"


def parse_zone(name: str) -> ZoneInfo:
    """Return the IANA time zone `name` (e.g. Europe/Berlin, UTC), or raise ValueError."""
    zone = find_zone(name)
    if zone is None:
        close = difflib.get_close_matches(name, available_timezones() - {"localtime"}, n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        raise ValueError(
            f'unknown time zone "{name}": {hint}use an IANA name such as Europe/Berlin or UTC'
        )
    return zone


def find_zone(name: str) -> ZoneInfo | None:
    """The IANA zone `name`, or None; never "localtime" or "posixrules", which load on
    Debian but name whatever the host has."""
    if name in ("localtime", "posixrules"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def scheduled_times(
    schedule: str, zone: tzinfo, after: datetime, until: datetime, limit: int
) -> ScheduledTimes:
    """The scheduled times t with after < t <= until, oldest first, at most `limit`."""
    expr, end = parse_schedule(schedule), _utc(until, "until")
    times: list[datetime] = []
    for t in _forward(expr, zone, _utc(after, "after")):
        if t > end:
            break
        if len(times) == limit:
            return ScheduledTimes(times, cut=True)
        times.append(t.astimezone(zone))
    return ScheduledTimes(times, cut=False)


def next_fires(schedule: str, zone: tzinfo, after: datetime, n: int) -> list[datetime]:
    """The next `n` scheduled times strictly after `after` (fewer if the schedule ends)."""
    times = _forward(parse_schedule(schedule), zone, _utc(after, "after"))
    return [t.astimezone(zone) for t in itertools.islice(times, max(n, 0))]


def decide(
    schedule: str,
    zone: tzinfo,
    last_fired_for: datetime | None,
    created_at: datetime,
    now: datetime,
    catch_up: str,
    cap: int = MAX_CATCH_UP,
    grace: timedelta = DEFAULT_GRACE,
) -> Decision:
    """Which due times, those in (last_fired_for or created_at, now], fire now."""
    try:
        policy = CatchUp(catch_up)
    except ValueError:
        raise ValueError(f'catch_up "{catch_up}" is not one of {", ".join(CatchUp)}') from None
    if cap < 1:
        raise ValueError(f"cap must be at least 1, not {cap}")
    expr = parse_schedule(schedule)
    start = _utc(created_at if last_fired_for is None else last_fired_for, "last_fired_for")
    end = _utc(now, "now")
    n_fire = cap if policy is CatchUp.ALL else 1
    due: list[datetime] = []  # newest first, only as many as can be listed
    truncated = 0
    for t in _backward(expr, zone, start, end):
        if len(due) < n_fire + cap:
            due.append(t)
        elif truncated < MAX_COUNTED:
            truncated += 1
        else:
            break
    if not due:
        return Decision([], [], 0, None)
    due.reverse()
    if policy is CatchUp.SKIP:
        fire = due[-1:] if end - due[-1] <= grace else []
    else:
        fire = due[-n_fire:]
    skipped = due[: len(due) - len(fire)]
    truncated = min(truncated + max(len(skipped) - cap, 0), MAX_COUNTED)
    return Decision(
        fire=[t.astimezone(zone) for t in fire],
        skipped=[t.astimezone(zone) for t in skipped[-cap:]],
        truncated=truncated,
        new_last_fired_for=due[-1].astimezone(zone),
    )


def kickoff_id(cron_id: str, scheduled: datetime) -> str:
    """`<cron_id>-<YYYYMMDDTHHMMZ>`, the plan id of the kickoff for one scheduled instant.

    The stamp is UTC, so the two 02:30 of a fall-back night cannot collide. An
    instant off the whole minute in UTC (zones whose offset had seconds, such as
    Africa/Monrovia before 1972) gets seconds too: YYYYMMDDTHHMMSSZ.
    """
    if not names.is_valid(cron_id):
        raise ValueError(
            f'cron id "{cron_id}" must start with a letter, digit or _ '
            "and hold only letters, digits, _ - and ."
        )
    u = _utc(scheduled, "scheduled")
    if u.microsecond:
        raise ValueError(f"scheduled time {scheduled.isoformat()} is not a whole second")
    stamp = f"{u.year:04d}{u.month:02d}{u.day:02d}T{u.hour:02d}{u.minute:02d}"
    if u.second:
        stamp += f"{u.second:02d}"
    return f"{cron_id}-{stamp}Z"


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def _instant(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant a naive wall-clock time of `zone` fires at."""
    t = wall.replace(tzinfo=zone, fold=0)
    before, after = t.utcoffset(), t.replace(fold=1).utcoffset()
    if before >= after:  # an ordinary time, or the first of a repeated one
        return (wall - before).replace(tzinfo=UTC)
    # Skipped by a forward jump: fire at the jump, found by bisection on whole
    # seconds. At `low` the old offset holds, at `high` the new one.
    low, high = wall - after, wall - before
    while high - low > _SECOND:
        mid = low + _SECOND * ((high - low) // _SECOND // 2)
        if mid.replace(tzinfo=UTC).astimezone(zone).utcoffset() == before:
            low = mid
        else:
            high = mid
    return high.replace(tzinfo=UTC)


def _forward(expr: str, zone: tzinfo, after: datetime) -> Iterator[datetime]:
    """UTC instants strictly after `after`, increasing, each once."""
    if intervals.is_every(expr):
        yield from intervals.forward(expr, after)
        return
    # No wall time before after's own can fire after it: wall -> instant is monotonic.
    lib = _croniter()
    walls = lib.croniter(expr, after.astimezone(zone).replace(tzinfo=None, fold=0))
    last = after
    while True:
        try:
            t = _instant(walls.get_next(datetime), zone)
        except lib.CroniterBadDateError:  # no match within croniter's 50-year search
            return
        if t > last:
            yield t
            last = t


def _backward(expr: str, zone: tzinfo, after: datetime, until: datetime) -> Iterator[datetime]:
    """UTC instants in (after, until], decreasing, each once."""
    if intervals.is_every(expr):
        yield from intervals.backward(expr, after, until)
        return
    u = until.astimezone(zone)
    # In the repeat of a fall-back hour, later wall times of the first pass
    # are still earlier instants: start the walk after the repeated span.
    lift = max(u.replace(fold=0).utcoffset() - u.utcoffset(), timedelta(0))
    start = u.replace(tzinfo=None, fold=0, second=0, microsecond=0) + lift + _MINUTE
    lib = _croniter()
    walls = lib.croniter(expr, start)
    last = until + _SECOND
    while True:
        try:
            t = _instant(walls.get_prev(datetime), zone)
        except lib.CroniterBadDateError:
            return
        if t <= after:
            return
        if t < last and t <= until:
            yield t
            last = t

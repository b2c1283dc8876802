"""Times as the vault holds them: one formatter, one parser, one wall clock.

Every time the daemons and the commands write (plan keys, events.jsonl, usage
lines, heartbeats) is UTC with a `Z`: `2025-11-04T10:00:00Z`, to the second;
heartbeats add microseconds, because monitors compute ages from them. A time a
person writes may be a YAML timestamp or any ISO 8601 text; one without an
offset is taken as UTC, a date alone as its midnight UTC. A time that cannot be
turned into UTC (year 1 with a positive offset, year 9999 with a negative one)
is not a time: it would overflow the first time it is compared or written.

`utcnow` is the wall clock the layers above pass in (`now`, `clock=`): nothing
in core/ calls it, so every rule about time is a function of its arguments.
"""

from __future__ import annotations

from datetime import UTC, date, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime, micro: bool = False) -> str:
    """UTC ISO 8601 with Z, to the second (to the microsecond with `micro`)."""
    # isoformat, not strftime: strftime writes year 1 as `1`, which reads back as no time.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(
        timespec="microseconds" if micro else "seconds") + "Z"


def iso(value: datetime | None) -> str | None:
    """format_time, or None for no time (a row's optional time)."""
    return format_time(value) if value is not None else None


def parse_time(value: object) -> datetime | None:
    """An aware time from a YAML timestamp or an ISO string; None for anything else."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):  # `approved_at: 2025-11-04`: its midnight, UTC
        parsed = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    return parsed

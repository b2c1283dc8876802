"""Modulatio's schedule language, translated to five cron fields.

Modulatio's `cron-config.json` schedules are words, not crontab lines. Each form
that has a five-field equivalent is translated, so the exactly-once machinery of
core/cron.py (one kickoff id per scheduled instant) applies unchanged:

    daily HH:MM            -> MM HH * * *
    weekly DAY HH:MM       -> MM HH * * DAY        (mon tue wed thu fri sat sun)
    monthly D HH:MM        -> MM HH D * *          (months without day D are skipped)
    hourly :MM             -> MM * * * *
    Nm  (N divides 60)     -> */N * * * *          (30m, 15m, 1m)
    Nh  (N divides 24)     -> 0 */N * * *          (6h, 1h)
    1d                     -> 0 0 * * *

Intervals are aligned on the clock (30m fires at :00 and :30), where Modulatio
counted them from the job's previous run; an interval with no clock-aligned form
(45m, 5h, 2d) is refused with the nearest forms named. Modulatio evaluated the
words in UTC: `modulatio import modulatio-cron` writes `timezone: UTC` into the
entries it makes; a hand-written entry or `cron add --schedule "daily 06:00"` reads
them on the entry's zone, like any schedule.
"""

from __future__ import annotations

import re

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = r"(\d{1,2}):(\d{2})"
_DAILY = re.compile(rf"daily\s+{_TIME}")
_WEEKLY = re.compile(rf"weekly\s+([a-z]+)\s+{_TIME}")
_MONTHLY = re.compile(rf"monthly\s+(\d{{1,2}})\s+{_TIME}")
_HOURLY = re.compile(r"hourly\s+:(\d{2})")
_INTERVAL = re.compile(r"(\d+)\s*(s|m|h|d|w)")
_WORD = re.compile(r"(daily|weekly|monthly|hourly)\b|\d+\s*[smhdw]$")


def is_words(text: str) -> bool:
    """Whether `text` is written in the schedule language (so its errors are about it)."""
    return _WORD.match(text.strip().lower()) is not None


def translate(text: str) -> str | None:
    """Five cron fields for a schedule in the language; None when `text` is not in it.
    ValueError, naming the form to use, when it is but cannot be translated."""
    s = " ".join(text.strip().lower().split())
    if not is_words(s):
        return None
    if m := _DAILY.fullmatch(s):
        return f"{_minute(s, m[2])} {_hour(s, m[1])} * * *"
    if m := _WEEKLY.fullmatch(s):
        if m[1] not in _DAYS:
            raise ValueError(f'schedule "{text}": day "{m[1]}" is not one of '
                             f"{' '.join(_DAYS)}")
        return f"{_minute(s, m[3])} {_hour(s, m[2])} * * {m[1]}"
    if m := _MONTHLY.fullmatch(s):
        if not 1 <= int(m[1]) <= 31:
            raise ValueError(f'schedule "{text}": day of the month {m[1]} is not 1-31')
        return f"{_minute(s, m[3])} {_hour(s, m[2])} {int(m[1])} * *"
    if m := _HOURLY.fullmatch(s):
        return f"{_minute(s, m[1])} * * * *"
    if m := _INTERVAL.fullmatch(s):
        return _interval(text, int(m[1]), m[2])
    raise ValueError(f'schedule "{text}" is not understood: use daily HH:MM, weekly DAY HH:MM, '
                     "monthly D HH:MM, hourly :MM, an interval such as 30m or 6h, or 5 "
                     "cron fields")


def _hour(s: str, value: str) -> int:
    if not 0 <= int(value) <= 23:
        raise ValueError(f'schedule "{s}": hour {value} is out of range 0-23')
    return int(value)


def _minute(s: str, value: str) -> int:
    if not 0 <= int(value) <= 59:
        raise ValueError(f'schedule "{s}": minute {value} is out of range 0-59')
    return int(value)


def _interval(text: str, n: int, unit: str) -> str:
    if unit == "m" and n > 0 and 60 % n == 0:
        return "* * * * *" if n == 1 else f"*/{n} * * * *"
    if unit == "m" and n > 0 and n % 60 == 0 and 24 % (n // 60) == 0:
        return _interval(text, n // 60, "h")
    if (unit == "h" and n == 24) or (unit == "d" and n == 1):
        return "0 0 * * *"
    if unit == "h" and n > 0 and 24 % n == 0:
        return "0 * * * *" if n == 1 else f"0 */{n} * * *"
    if unit == "w" and n == 1:
        return "0 0 * * mon"
    raise ValueError(
        f'schedule "{text}": the interval {n}{unit} has no clock-aligned form (intervals '
        "run on the clock here: minutes that divide 60, hours that divide 24, 1d, 1w); "
        "write 5 cron fields or a daily/weekly form instead")

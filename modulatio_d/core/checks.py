"""Checked values: one person's value turned into what a consumer can use, or a BadFile.

The helpers every key of a plan goes through (core/plan.py's parser): whole
numbers in range, texts that can be handed to a process (no NUL, encodable, not
over what Linux takes for one argument or variable), times that can be turned
into UTC, durations, environment mappings; and the checks of the daemon's own
keys (claim, in_flight, reflection_log entries), shared by the plan's parser and
the owned-keys record a stale save is repaired from. No I/O.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path

from modulatio_d.core.errors import FileFault
from modulatio_d.core.times import parse_time
from modulatio_d.core.yaml_text import plain

MAX_COUNT = 2 ** 63 - 1
"""The largest rev, fencing token, attempt, index, retries or token budget: what a
signed 64-bit counter holds (past it, a float would round it)."""
MAX_TEXT_BYTES = 64 * 1024
"""The largest text handed to a step's process (the command, one argument, one
environment variable, the objective): Linux refuses one over 128 KiB."""
MAX_DURATION_S = 100 * 365 * 86400.0
"""The longest timeout or wall_clock budget: a century, finite for every clock sum."""

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?"
                       r"(?:(\d+(?:\.\d+)?)s)?")

def parse_duration(value: object) -> float:
    """Seconds from a number or a string like `90`, `90s`, `10m`, `2h`, `1d`, `1h30m`."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 10m, 2h")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):  # .nan, .inf, and 1e400 read as inf
            raise ValueError(f"{value} is not a number of seconds")
        if value > MAX_DURATION_S:
            raise ValueError(f"a duration may be a century ({MAX_DURATION_S:.0f} s) at most")
        if value <= 0:
            raise ValueError("a duration must be more than zero")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return parse_duration(float(text))
        m = _DURATION.fullmatch(text)
        if m and any(m.groups()):
            d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return parse_duration(d * 86400 + h * 3600 + mi * 60 + s)
    raise ValueError(f"{show(value)} is not a duration: write seconds or a string like 90s, "
                     f"10m, 2h")


def show(value: object) -> str:
    """A value for a message: repr, shortened (a person's value may be a megabyte)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 30:
        return "a number too big"  # repr of a 5,000-digit int raises, besides
    text = repr(plain(value)) if isinstance(value, (dict, list)) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def count(fail: FileFault, value: object, what: str, key: str | None = None,
           line: int | None = None, low: int = 0, high: int = MAX_COUNT,
           hint: str = "") -> int:
    """A whole number from `low` to `high` (not a bool), else refused."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        fail(f"{what} {show(value)} is not a whole number from {low} to {high}", key,
             hint=hint, line=line)
    return value


def text(fail: FileFault, value: object, what: str, key: str | None = None,
          line: int | None = None, to_process: bool = True) -> str:
    """A string; with `to_process`, one that can become an argument, a variable or a
    path of a child process: no NUL, encodable, at most MAX_TEXT_BYTES."""
    if not isinstance(value, str):
        fail(f"{what} must be a string", key, line=line)
    if to_process:
        if "\0" in value:
            fail(f"{what} holds a NUL character, which no process argument, variable or "
                 f"path can hold", key, line=line)
        try:
            size = len(value.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            fail(f"{what} holds a lone surrogate (an escape like \\ud800), which cannot be "
                 f"encoded", key, line=line)
        if size > MAX_TEXT_BYTES:
            fail(f"{what} is {size} bytes, more than the {MAX_TEXT_BYTES} a step's "
                 f"argument or variable may be", key, line=line,
                 hint="put long text in a file and pass its path")
    return value


def time(fail: FileFault, data: dict, key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    parsed = parse_time(value)
    if parsed is None:
        fail(f"{key} {show(value)} is not a time that can be turned into UTC", key,
             hint="write an ISO 8601 time such as 2025-11-04T10:00:00Z")
    return parsed


def check_own_keys(path: Path, keys: dict) -> None:
    """Raise BadFile when the daemon's keys in `keys` (its record of them, which a stale
    save is repaired from) have a shape parse_plan would refuse in a plan."""
    fail = FileFault(path, lambda key: None)
    for key in ("current_index", "rev"):
        if keys.get(key) is not None:
            count(fail, keys[key], key, key)
    for key in ("execution_started_at", "completed_at"):
        time(fail, keys, key)
    if keys.get("claim") is not None:
        check_claim(fail, keys["claim"])
    if keys.get("in_flight") is not None:
        check_in_flight(fail, keys["in_flight"])
    if keys.get("retry_wait") is not None:
        check_retry(fail, keys["retry_wait"])
    log = keys.get("reflection_log") or []
    if not isinstance(log, list):
        fail("reflection_log is not a list", "reflection_log")
    for i, entry in enumerate(log):
        check_entry(fail, None, i, entry)
    check_archived(fail, keys.get("reflection_archived"))
    for key in ("last_error", "progress", "last_result"):
        if keys.get(key) is not None:
            text(fail, keys[key], key, key, to_process=False)
    check_runs(fail, keys.get("runs") or [])


def check_runs(fail: FileFault, runs: object) -> None:
    """`runs` (earlier runs of a plan, written by `plan rerun`): a list of mappings whose
    `run` and `token` are counts."""
    if not isinstance(runs, list):
        fail("runs is not a list (written by `plan rerun`; remove the line)", "runs")
    for entry in runs:
        entry = _daemon_map(fail, entry, "runs")
        for key in ("run", "token"):
            if entry.get(key) is not None:
                count(fail, entry[key], f"runs {key}", "runs")


def _daemon_map(fail: FileFault, value: object, key: str) -> dict:
    if not isinstance(value, dict):
        fail(f"{key} is not a mapping (the daemon writes it; remove the line)", key)
    return value


def check_claim(fail: FileFault, claim: object) -> None:
    """`claim: {host, pid, token, claimed_at}`: each optional, each of its type."""
    claim = _daemon_map(fail, claim, "claim")
    hint = "the daemon writes it; remove the line"
    if claim.get("token") is not None:
        count(fail, claim["token"], "claim token", "claim", hint=hint)
    if claim.get("pid") is not None:
        count(fail, claim["pid"], "claim pid", "claim", hint=hint)
    if claim.get("host") is not None:
        text(fail, claim["host"], "claim host", "claim", to_process=False)
    if claim.get("claimed_at") is not None and parse_time(claim["claimed_at"]) is None:
        fail(f"claim claimed_at {show(claim['claimed_at'])} is not a time", "claim", hint=hint)


def check_in_flight(fail: FileFault, flight: object) -> None:
    """`in_flight: {index, attempt, token, started_at}`: each optional, each of its type."""
    flight = _daemon_map(fail, flight, "in_flight")
    hint = "the daemon writes it; remove the line"
    if flight.get("index") is not None:
        count(fail, flight["index"], "in_flight index", "in_flight", hint=hint)
    if flight.get("attempt") is not None:  # part of a log file's name: a number, no path
        count(fail, flight["attempt"], "in_flight attempt", "in_flight", hint=hint)
    if flight.get("token") is not None:
        count(fail, flight["token"], "in_flight token", "in_flight", hint=hint)
    if flight.get("started_at") is not None and parse_time(flight["started_at"]) is None:
        fail(f"in_flight started_at {show(flight['started_at'])} is not a time", "in_flight",
             hint=hint)


def check_retry(fail: FileFault, retry: object) -> None:
    """`retry_wait: {index, failures, at}`: a plan released to retry a step later."""
    retry = _daemon_map(fail, retry, "retry_wait")
    hint = "the daemon writes it; remove the line to retry at once"
    for key in ("index", "failures"):
        if retry.get(key) is not None:
            count(fail, retry[key], f"retry_wait {key}", "retry_wait", hint=hint)
    if retry.get("at") is not None and parse_time(retry["at"]) is None:
        fail(f"retry_wait at {show(retry['at'])} is not a time", "retry_wait", hint=hint)


def check_archived(fail: FileFault, value: object) -> None:
    """`reflection_archived: {entries, duration_s}`: how many reflection entries (and how
    much running time) moved to the file beside the plan (store/reflections.py)."""
    if value is None:
        return
    found = _daemon_map(fail, value, "reflection_archived")
    hint = "the daemon writes it; put back the value it wrote (a git diff shows it)"
    count(fail, found.get("entries", 0), "reflection_archived entries", "reflection_archived",
          hint=hint)
    spent = found.get("duration_s", 0)
    if isinstance(spent, bool) or not isinstance(spent, (int, float)) \
            or not 0 <= spent <= MAX_COUNT:  # refuses .nan and .inf too
        fail(f"reflection_archived duration_s {show(spent)} is not a number of seconds",
             "reflection_archived", hint=hint)


_ENTRY_COUNTS = ("index", "attempt", "token")
_ENTRY_TEXTS = ("title", "outcome", "exit", "decision", "summary", "log")


def check_entry(fail: FileFault, line: int | None, i: int, entry: object) -> None:
    """One reflection_log entry: a mapping whose known keys have their types (others
    are kept as written and read by nobody)."""
    where = f"reflection_log entry {i + 1}"
    if not isinstance(entry, dict):
        fail(f"{where} is {show(entry)}, not a mapping (the daemon writes the log)",
             "reflection_log", line=line)
    for key in _ENTRY_COUNTS:
        if entry.get(key) is not None:
            count(fail, entry[key], f"{where}: {key}", "reflection_log", line=line)
    for key in _ENTRY_TEXTS:
        if entry.get(key) is not None:
            text(fail, entry[key], f"{where}: {key}", "reflection_log", line=line,
                  to_process=False)
    for key in ("started_at", "ended_at"):
        if entry.get(key) is not None and parse_time(entry[key]) is None:
            fail(f"{where}: {key} {show(entry[key])} is not a time", "reflection_log",
                 line=line)
    duration = entry.get("duration_s")
    if duration is not None and (isinstance(duration, bool) or not isinstance(
            duration, (int, float)) or not 0 <= duration <= MAX_DURATION_S):
        fail(f"{where}: duration_s {show(duration)} is not a number of seconds from 0 to "
             f"{MAX_DURATION_S:.0f}", "reflection_log", line=line)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_env(fail: FileFault, env: object, where: str, line: int | None) -> dict[str, str]:
    """A mapping of variable names to texts or numbers, each one a process can be given."""
    if env is None or env == {}:
        return {}
    if not isinstance(env, dict):
        fail(f"{where}: env must be a mapping of names to values", line=line)
    out = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            fail(f"{where}: env name {show(name)} is not a variable name", line=line,
                 hint="use letters, digits and '_', not starting with a digit")
        if value is None or isinstance(value, (dict, list)) or (
                isinstance(value, float) and not math.isfinite(value)):
            fail(f"{where}: env {name} is {show(value)}, not a text or a number", line=line)
        out[name] = text(fail, str(value), f"{where}: env {name}", line=line)
        if len(name) + len(out[name]) > MAX_TEXT_BYTES:
            text(fail, f"{name}={out[name]}", f"{where}: env {name}", line=line)
    return out

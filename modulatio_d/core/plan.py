"""Plans, sub-objectives and statuses: parsed from a loaded Document, no I/O.

Every problem is a BadFile naming the file and the line of the key at fault.
The transition table is the one place that says which status change is
allowed from where; the CLI and the daemon both ask it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from modulatio_d.core import names
from modulatio_d.core.errors import FileFault, TransitionRefused
from modulatio_d.core.markdown import Document, plain
from modulatio_d.core.times import parse_time


class PlanStatus(StrEnum):
    DRAFT = "draft"
    """Being written; no daemon touches it."""
    APPROVED = "approved"
    """Ready: the next free daemon claims it and runs from current_index."""
    EXECUTING = "executing"
    """A daemon holds its lock and runs it; with no lock holder, an orphan of a
    dead daemon that the next daemon claims and resumes at current_index."""
    PAUSED = "paused"
    """Stopped between steps by a person, a failure or the budget; resumes
    where it stopped when approved again."""
    COMPLETED = "completed"
    """Final: every sub-objective ran."""
    FAILED = "failed"
    """Final until `plan retry`: a step failed and its on_failure said abort."""
    ABORTED = "aborted"
    """Final until `plan retry`: a person aborted it or declined its ticket."""


FINAL = frozenset({PlanStatus.COMPLETED, PlanStatus.FAILED, PlanStatus.ABORTED})
PERSON_SETS = frozenset({PlanStatus.DRAFT, PlanStatus.APPROVED, PlanStatus.PAUSED,
                         PlanStatus.ABORTED})
CLAIMABLE = frozenset({PlanStatus.APPROVED, PlanStatus.EXECUTING})

_NOT_FINAL = [s for s in PlanStatus if s not in FINAL]

# action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[tuple[PlanStatus, ...], PlanStatus]] = {
    "approve": ((PlanStatus.DRAFT, PlanStatus.PAUSED), PlanStatus.APPROVED),
    "resume": ((PlanStatus.PAUSED,), PlanStatus.APPROVED),
    "pause": ((PlanStatus.APPROVED, PlanStatus.EXECUTING), PlanStatus.PAUSED),
    "abort": (tuple(_NOT_FINAL), PlanStatus.ABORTED),
    "retry": ((PlanStatus.FAILED, PlanStatus.ABORTED), PlanStatus.APPROVED),
    # `project resume`: an executing plan whose daemon died (its lock is free)
    "recover": ((PlanStatus.EXECUTING,), PlanStatus.APPROVED),
}


def transition(plan_id: str, current: PlanStatus, action: str) -> PlanStatus:
    froms, to = TRANSITIONS[action]
    if current not in froms:
        raise TransitionRefused(plan_id, current.value, action, [s.value for s in froms])
    return to


class OnFailure(StrEnum):
    PAUSE = "pause"
    ABORT = "abort"
    CONTINUE = "continue"


class StepKind(StrEnum):
    AGENT = "agent"
    RUN = "run"
    CALL = "call"


MAX_STEPS = 10_000
"""Sub-objectives a plan may have."""
MAX_COUNT = 2 ** 63 - 1
"""The largest rev, fencing token, attempt, index, retries or token budget: what a
signed 64-bit counter holds (past it, a float would round it)."""
MAX_TEXT_BYTES = 64 * 1024
"""The largest text handed to a step's process (the command, one argument, one
environment variable, the objective): Linux refuses one over 128 KiB."""
MAX_DURATION_S = 100 * 365 * 86400.0
"""The longest timeout or wall_clock budget: a century, finite for every clock sum."""

DAEMON_KEYS = ("current_index", "execution_started_at", "completed_at", "claim", "in_flight",
               "reflection_log", "last_error", "rev")
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?"
                       r"(?:(\d+(?:\.\d+)?)s)?")
_CALL = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


@dataclass(frozen=True)
class SubObjective:
    index: int
    title: str
    kind: StepKind
    objective: str = ""
    agent: str = ""
    run: str | tuple[str, ...] = ""
    call: str = ""
    timeout: float | None = None
    retries: int = 0
    on_failure: OnFailure = OnFailure.PAUSE
    rerun_after_crash: bool = True
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Budget:
    tokens: int | None = None
    cost_usd: float | None = None
    wall_clock: float | None = None


@dataclass(frozen=True)
class Plan:
    path: Path
    id: str
    title: str
    status: PlanStatus
    priority: int
    sub_objectives: tuple[SubObjective, ...]
    current_index: int
    budget: Budget
    rev: int
    approved_at: datetime | None
    execution_started_at: datetime | None
    completed_at: datetime | None
    last_error: str | None
    claim: dict[str, Any] | None
    in_flight: dict[str, Any] | None
    reflection_log: list[dict[str, Any]]
    cwd: str | None
    reflector: str | None
    data: dict  # the whole frontmatter, as ruamel loaded it

    @property
    def done(self) -> int:
        return min(self.current_index, len(self.sub_objectives))

    @property
    def total(self) -> int:
        return len(self.sub_objectives)

    @property
    def last_token(self) -> int:
        """The highest fencing token this plan has seen: its claim's, else (the claim is
        removed when the plan ends) the highest in_flight or reflection_log holds, so
        that a retried plan never hands out a token again."""
        found = [(self.claim or {}).get("token"), (self.in_flight or {}).get("token"),
                 *(e.get("token") for e in self.reflection_log)]
        return max((t for t in found if isinstance(t, int)), default=0)

    def own_keys(self) -> dict[str, Any]:
        """The daemon-owned keys with their values in this plan."""
        return {k: getattr(self, k) for k in DAEMON_KEYS}

    def with_keys(self, changes: dict[str, Any]) -> Plan:
        """This plan after `changes` (daemon keys and status) were written."""
        fields = {k: v for k, v in changes.items() if k in DAEMON_KEYS}
        if "status" in changes:
            fields["status"] = PlanStatus(changes["status"])
        for key in ("execution_started_at", "completed_at"):
            if key in fields:
                fields[key] = parse_time(fields[key])
        return replace(self, **fields)


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
    raise ValueError(f"{_show(value)} is not a duration: write seconds or a string like 90s, "
                     f"10m, 2h")


def _show(value: object) -> str:
    """A value for a message: repr, shortened (a person's value may be a megabyte)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 30:
        return "a number too big"  # repr of a 5,000-digit int raises, besides
    text = repr(plain(value)) if isinstance(value, (dict, list)) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _count(fail: FileFault, value: object, what: str, key: str | None = None,
           line: int | None = None, low: int = 0, high: int = MAX_COUNT,
           hint: str = "") -> int:
    """A whole number from `low` to `high` (not a bool), else refused."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        fail(f"{what} {_show(value)} is not a whole number from {low} to {high}", key,
             hint=hint, line=line)
    return value


def _text(fail: FileFault, value: object, what: str, key: str | None = None,
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


def _time(fail: FileFault, data: dict, key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    parsed = parse_time(value)
    if parsed is None:
        fail(f"{key} {_show(value)} is not a time that can be turned into UTC", key,
             hint="write an ISO 8601 time such as 2025-11-04T10:00:00Z")
    return parsed


def parse_plan(doc: Document, expected_id: str | None = None) -> Plan:
    """A Plan from a loaded document; `expected_id` is the file name's stem.

    Every key the daemon or a command reads is checked here, its own keys included,
    so that what this accepts never makes a consumer raise (docs/plan-file.md, "What
    is refused").
    """
    data, fail = doc.data, doc.fault()
    plan_id = data.get("id", expected_id)
    if not isinstance(plan_id, str) or not names.is_valid(plan_id):
        fail(f"id {_show(plan_id)} is not a valid name", "id",
             hint="use letters, digits, '_', '-' and '.', starting with a letter, digit or '_'")
    if expected_id is not None and plan_id != expected_id:
        fail(f"id {plan_id!r} differs from the file name {expected_id!r}", "id",
             hint=f"set id: {expected_id} or rename the file to {plan_id}.md")
    raw_status = data.get("status", "draft")
    try:
        status = PlanStatus(raw_status if isinstance(raw_status, str) else "")
    except ValueError:
        fail(f"unknown status {_show(raw_status)}", "status",
             hint="use one of " + ", ".join(s.value for s in PlanStatus))
    steps = data.get("sub_objectives")
    if not isinstance(steps, list) or not steps:
        what = "missing" if steps is None else "empty" if steps == [] else "not a list"
        fail(f"sub_objectives is {what}", "sub_objectives" if "sub_objectives" in data else None,
             hint="list the steps under sub_objectives:, one '- ' line each")
    if len(steps) > MAX_STEPS:
        fail(f"sub_objectives has {len(steps)} items, more than the {MAX_STEPS} allowed",
             "sub_objectives", hint="split the work into several plans")
    subs = tuple(_parse_step(fail, doc, steps, i) for i in range(len(steps)))
    index = data.get("current_index", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        fail(f"current_index {_show(index)} is not an integer", "current_index")
    if not 0 <= index <= len(subs):
        fail(f"current_index {_show(index)} is outside 0..{len(subs)} (there are {len(subs)} "
             f"sub-objectives)", "current_index")
    priority = data.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        fail(f"priority {_show(priority)} is not an integer", "priority")
    _count(fail, priority, "priority", "priority", low=-MAX_COUNT)
    rev = data.get("rev", 0)
    if isinstance(rev, bool) or not isinstance(rev, int) or not 0 <= rev <= MAX_COUNT:
        fail(f"rev {_show(rev)} is not a count (the daemon writes it; remove the line)", "rev")
    log = data.get("reflection_log") or []
    if not isinstance(log, list):
        fail("reflection_log is not a list (the daemon writes it)", "reflection_log")
    for i, entry in enumerate(log):
        _check_entry(fail, doc.line_of_item(log, i), i, entry)
    claim, in_flight = data.get("claim"), data.get("in_flight")
    if claim is not None:
        _check_claim(fail, claim)
    if in_flight is not None:
        _check_in_flight(fail, in_flight)
    for key in ("cwd", "reflector"):
        if data.get(key) is not None:
            _text(fail, data[key], key, key)
    if data.get("title") is not None:
        _text(fail, data["title"], "title", "title")
    last_error = data.get("last_error")
    if last_error is not None:
        _text(fail, last_error, "last_error", "last_error", to_process=False)
    return Plan(
        path=doc.path, id=plan_id, title=str(data.get("title") or plan_id), status=status,
        priority=priority, sub_objectives=subs, current_index=index,
        budget=_parse_budget(fail, data.get("budget")), rev=rev,
        approved_at=_time(fail, data, "approved_at"),
        execution_started_at=_time(fail, data, "execution_started_at"),
        completed_at=_time(fail, data, "completed_at"),
        last_error=last_error,
        claim=plain(claim), in_flight=plain(in_flight),
        reflection_log=plain(log), cwd=data.get("cwd"), reflector=data.get("reflector"),
        data=data,
    )


def check_own_keys(path: Path, keys: dict) -> None:
    """Raise BadFile when the daemon's keys in `keys` (its record of them, which a stale
    save is repaired from) have a shape parse_plan would refuse in a plan."""
    fail = FileFault(path, lambda key: None)
    for key in ("current_index", "rev"):
        if keys.get(key) is not None:
            _count(fail, keys[key], key, key)
    for key in ("execution_started_at", "completed_at"):
        _time(fail, keys, key)
    if keys.get("claim") is not None:
        _check_claim(fail, keys["claim"])
    if keys.get("in_flight") is not None:
        _check_in_flight(fail, keys["in_flight"])
    log = keys.get("reflection_log") or []
    if not isinstance(log, list):
        fail("reflection_log is not a list", "reflection_log")
    for i, entry in enumerate(log):
        _check_entry(fail, None, i, entry)
    if keys.get("last_error") is not None:
        _text(fail, keys["last_error"], "last_error", "last_error", to_process=False)


def _daemon_map(fail: FileFault, value: object, key: str) -> dict:
    if not isinstance(value, dict):
        fail(f"{key} is not a mapping (the daemon writes it; remove the line)", key)
    return value


def _check_claim(fail: FileFault, claim: object) -> None:
    """`claim: {host, pid, token, claimed_at}`: each optional, each of its type."""
    claim = _daemon_map(fail, claim, "claim")
    hint = "the daemon writes it; remove the line"
    if claim.get("token") is not None:
        _count(fail, claim["token"], "claim token", "claim", hint=hint)
    if claim.get("pid") is not None:
        _count(fail, claim["pid"], "claim pid", "claim", hint=hint)
    if claim.get("host") is not None:
        _text(fail, claim["host"], "claim host", "claim", to_process=False)
    if claim.get("claimed_at") is not None and parse_time(claim["claimed_at"]) is None:
        fail(f"claim claimed_at {_show(claim['claimed_at'])} is not a time", "claim", hint=hint)


def _check_in_flight(fail: FileFault, flight: object) -> None:
    """`in_flight: {index, attempt, token, started_at}`: each optional, each of its type."""
    flight = _daemon_map(fail, flight, "in_flight")
    hint = "the daemon writes it; remove the line"
    if flight.get("index") is not None:
        _count(fail, flight["index"], "in_flight index", "in_flight", hint=hint)
    if flight.get("attempt") is not None:  # part of a log file's name: a number, no path
        _count(fail, flight["attempt"], "in_flight attempt", "in_flight", low=1, hint=hint)
    if flight.get("token") is not None:
        _count(fail, flight["token"], "in_flight token", "in_flight", hint=hint)
    if flight.get("started_at") is not None and parse_time(flight["started_at"]) is None:
        fail(f"in_flight started_at {_show(flight['started_at'])} is not a time", "in_flight",
             hint=hint)


_ENTRY_COUNTS = ("index", "attempt", "token")
_ENTRY_TEXTS = ("title", "outcome", "exit", "decision", "summary", "log")


def _check_entry(fail: FileFault, line: int | None, i: int, entry: object) -> None:
    """One reflection_log entry: a mapping whose known keys have their types (others
    are kept as written and read by nobody)."""
    where = f"reflection_log entry {i + 1}"
    if not isinstance(entry, dict):
        fail(f"{where} is {_show(entry)}, not a mapping (the daemon writes the log)",
             "reflection_log", line=line)
    for key in _ENTRY_COUNTS:
        if entry.get(key) is not None:
            _count(fail, entry[key], f"{where}: {key}", "reflection_log", line=line)
    for key in _ENTRY_TEXTS:
        if entry.get(key) is not None:
            _text(fail, entry[key], f"{where}: {key}", "reflection_log", line=line,
                  to_process=False)
    for key in ("started_at", "ended_at"):
        if entry.get(key) is not None and parse_time(entry[key]) is None:
            fail(f"{where}: {key} {_show(entry[key])} is not a time", "reflection_log",
                 line=line)
    duration = entry.get("duration_s")
    if duration is not None and (isinstance(duration, bool) or not isinstance(
            duration, (int, float)) or not 0 <= duration <= MAX_DURATION_S):
        fail(f"{where}: duration_s {_show(duration)} is not a number of seconds from 0 to "
             f"{MAX_DURATION_S:.0f}", "reflection_log", line=line)


def _parse_budget(fail: FileFault, raw: object) -> Budget:
    if raw is None:
        return Budget()
    if not isinstance(raw, dict):
        fail("budget must be a mapping like {tokens: 500000, cost_usd: 5.0, wall_clock: 2h}",
             "budget")
    unknown = set(map(str, raw)) - {"tokens", "cost_usd", "wall_clock"}
    if unknown:
        fail(f"budget has unknown keys {sorted(unknown)}", "budget",
             hint="use tokens, cost_usd, wall_clock")
    tokens, cost = raw.get("tokens"), raw.get("cost_usd")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int)
                               or not 0 < tokens <= MAX_COUNT):
        fail(f"budget tokens {_show(tokens)} is not a positive integer", "budget")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float))
                             or not 0 < cost <= MAX_COUNT):  # refuses .nan and .inf too
        fail(f"budget cost_usd {_show(cost)} is not a positive number", "budget")
    wall = None
    if raw.get("wall_clock") is not None:
        try:
            wall = parse_duration(raw["wall_clock"])
        except ValueError as e:
            fail(f"budget wall_clock: {e}", "budget")
    return Budget(tokens=tokens, cost_usd=float(cost) if cost is not None else None,
                  wall_clock=wall)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _parse_step(fail: FileFault, doc: Document, steps: list, i: int) -> SubObjective:
    raw = steps[i]
    line = doc.line_of_item(steps, i)
    where = f"sub-objective {i + 1}"
    if isinstance(raw, str):
        if not raw.strip():
            fail(f"{where} is empty", line=line)
        text = _text(fail, raw.strip(), where, line=line)
        return SubObjective(index=i, title=text, kind=StepKind.AGENT, objective=text,
                            agent="default")
    if not isinstance(raw, dict):
        fail(f"{where} must be a text or a mapping, not {type(raw).__name__}", line=line)
    executors = [k for k in ("objective", "run", "call") if k in raw]
    if len(executors) != 1:
        which = "no executor" if not executors else "two executors " + " and ".join(executors)
        fail(f"{where} has {which}",
             line=line, hint="give exactly one of objective (with optional agent), run, call")
    if "agent" in raw and "objective" not in raw:
        fail(f"{where}: agent needs an objective to hand to it", line=line)
    kind = {"objective": StepKind.AGENT, "run": StepKind.RUN, "call": StepKind.CALL}[executors[0]]
    fields: dict[str, Any] = {"index": i, "kind": kind}
    if kind is StepKind.AGENT:
        objective, agent = raw["objective"], raw.get("agent", "default")
        if not isinstance(objective, str) or not objective.strip():
            fail(f"{where}: objective must be a non-empty text", line=line)
        _text(fail, objective, f"{where}: objective", line=line)
        if not isinstance(agent, str) or not names.is_valid(agent):
            fail(f"{where}: agent {_show(agent)} is not a valid name", line=line)
        fields.update(objective=objective.strip(), agent=agent)
        default_title = objective.strip()
    elif kind is StepKind.RUN:
        run = raw["run"]
        if isinstance(run, str) and run.strip():
            fields["run"] = _text(fail, run, f"{where}: run", line=line)
        elif isinstance(run, list) and run and all(
                isinstance(a, str) or isinstance(a, (int, float)) and not isinstance(a, bool)
                and math.isfinite(a) for a in run):
            fields["run"] = tuple(_text(fail, str(a), f"{where}: run argument {n + 1}",
                                        line=line) for n, a in enumerate(run))
        else:
            fail(f"{where}: run must be a command string or a non-empty list of arguments",
                 line=line)
        default_title = run if isinstance(run, str) else " ".join(fields["run"])
    else:
        call = raw["call"]
        if not isinstance(call, str) or not _CALL.fullmatch(call):
            fail(f"{where}: call {_show(call)} must be 'module.path:function'", line=line)
        fields["call"] = call
        default_title = call
    title = raw.get("title", default_title)
    if not isinstance(title, str):
        fail(f"{where}: title must be a text", line=line)
    fields["title"] = _text(fail, title.strip() or default_title, f"{where}: title", line=line)
    if raw.get("timeout") is not None:
        try:
            fields["timeout"] = parse_duration(raw["timeout"])
        except ValueError as e:
            fail(f"{where}: timeout: {e}", line=line)
    retries = raw.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        fail(f"{where}: retries {_show(retries)} is not a whole number >= 0", line=line)
    fields["retries"] = _count(fail, retries, f"{where}: retries", line=line)
    on_failure = raw.get("on_failure", "pause")
    try:
        fields["on_failure"] = OnFailure(on_failure if isinstance(on_failure, str) else "")
    except ValueError:
        fail(f"{where}: on_failure {_show(on_failure)} is unknown", line=line,
             hint="use pause, abort or continue")
    rerun = raw.get("rerun_after_crash", True)
    if not isinstance(rerun, bool):
        fail(f"{where}: rerun_after_crash must be true or false", line=line)
    fields["rerun_after_crash"] = rerun
    if raw.get("cwd") is not None:
        if not isinstance(raw["cwd"], str):
            fail(f"{where}: cwd must be a path", line=line)
        fields["cwd"] = _text(fail, raw["cwd"], f"{where}: cwd", line=line)
    fields["env"] = _parse_env(fail, raw.get("env"), where, line)
    return SubObjective(**fields)


def _parse_env(fail: FileFault, env: object, where: str, line: int | None) -> dict[str, str]:
    """A mapping of variable names to texts or numbers, each one a process can be given."""
    if env is None or env == {}:
        return {}
    if not isinstance(env, dict):
        fail(f"{where}: env must be a mapping of names to values", line=line)
    out = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            fail(f"{where}: env name {_show(name)} is not a variable name", line=line,
                 hint="use letters, digits and '_', not starting with a digit")
        if value is None or isinstance(value, (dict, list)) or (
                isinstance(value, float) and not math.isfinite(value)):
            fail(f"{where}: env {name} is {_show(value)}, not a text or a number", line=line)
        out[name] = _text(fail, str(value), f"{where}: env {name}", line=line)
        if len(name) + len(out[name]) > MAX_TEXT_BYTES:
            _text(fail, f"{name}={out[name]}", f"{where}: env {name}", line=line)
    return out

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
from functools import cached_property
from pathlib import Path
from typing import Any

from modulatio_d.core import checks, modulatio_shape, names, schedule
from modulatio_d.core.checks import MAX_COUNT, parse_duration
from modulatio_d.core.errors import FileFault, TransitionRefused
from modulatio_d.core.markdown import Document
from modulatio_d.core.times import parse_time
from modulatio_d.core.yaml_text import plain


class PlanStatus(StrEnum):
    DRAFT = "draft"
    """Being written; no daemon touches it."""
    APPROVED = "approved"
    """Ready: the next free daemon claims it and runs from current_index."""
    EXECUTING = "executing"
    """A daemon holds its lock and runs it; with no lock holder, an orphan of a
    dead daemon that the next daemon claims and resumes at current_index."""
    PAUSED = "paused"
    """Stopped between steps (a person, a failure, the budget); resumes when approved."""
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
    # `plan rerun`: a new run of a finished plan, the old one kept as history
    "rerun": ((PlanStatus.COMPLETED, PlanStatus.FAILED, PlanStatus.ABORTED),
              PlanStatus.APPROVED),
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


MAX_STEPS = 100_000
"""Sub-objectives a plan may have (its own text is held to 1 MiB too: 55,000 short ones)."""
DAEMON_KEYS = ("progress", "last_result", "current_index", "execution_started_at",
               "completed_at", "claim", "in_flight", "steps_digest", "runs",
               "reflection_archived", "reflection_log", "last_error", "retry_wait", "rev")
"""The daemon's keys, in the order it writes them at the end of the frontmatter."""
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
    retry_delay: schedule.RetryDelay | None = None


@dataclass(frozen=True)
class Budget:
    tokens: int | None = None
    cost_usd: float | None = None
    wall_clock: float | None = None
    since_start: bool = False
    """wall_clock counts from execution_started_at (Modulatio's cap), not attempts' sum."""


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
    progress: str | None = None  # the people's view (core/people.py)
    last_result: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)  # earlier runs (`plan rerun`)
    steps_digest: str | None = None  # core/digest.py: the steps the run went through
    approved_digest: str | None = None  # core/digest.py: the steps a person approved
    shape: modulatio_shape.Shape | None = None  # a Modulatio-shaped file: core/modulatio_shape
    schedule: schedule.Schedule = schedule.Schedule()
    retry_wait: dict[str, Any] | None = None  # {index, failures, at}: core/schedule.py
    reflection_archived: dict[str, Any] | None = None  # store/reflections.py

    @property
    def archived(self) -> int:
        """Entries of the log before `reflection_log`, in <plan-id>.reflection_log.jsonl."""
        return int((self.reflection_archived or {}).get("entries") or 0)

    @property
    def done(self) -> int:
        return min(self.current_index, len(self.sub_objectives))

    @property
    def total(self) -> int:
        return len(self.sub_objectives)

    @cached_property  # a plan is not changed, only replaced: asked at every beat and write
    def last_token(self) -> int:
        """The highest fencing token this plan has seen: its claim's, else (the claim is
        removed when the plan ends) the highest in_flight or reflection_log holds, so
        that a retried plan never hands out a token again."""
        found = [(self.claim or {}).get("token"), (self.in_flight or {}).get("token"),
                 *(e.get("token") for e in (*self.reflection_log, *self.runs))]
        return max((t for t in found if isinstance(t, int)), default=0)

    def own_keys(self) -> dict[str, Any]:
        """The daemon-owned keys with their values in this plan."""
        keys = {k: getattr(self, k) for k in DAEMON_KEYS}
        keys["runs"] = keys["runs"] or None  # no runs is no key, never `runs: []`
        return keys

    def with_keys(self, changes: dict[str, Any]) -> Plan:
        """This plan after `changes` (daemon keys and status) were written."""
        fields = {k: v for k, v in changes.items() if k in DAEMON_KEYS or k == "approved_digest"}
        if "runs" in fields:
            fields["runs"] = fields["runs"] or []  # None: the key removed
        if "status" in changes:
            fields["status"] = PlanStatus(changes["status"])
        for key in ("execution_started_at", "completed_at"):
            if key in fields:
                fields[key] = parse_time(fields[key])
        return replace(self, **fields)


def parse_plan(doc: Document, expected_id: str | None = None) -> Plan:
    """A Plan from a loaded document; `expected_id` is the file name's stem.

    Every key the daemon or a command reads is checked here, its own keys included,
    so that what this accepts never makes a consumer raise (docs/plan-file.md, "What
    is refused").
    """
    data, fail = doc.data, doc.fault()
    plan_id = data.get("id", expected_id)
    if not isinstance(plan_id, str) or not names.is_valid(plan_id):
        fail(f"id {checks.show(plan_id)} is not a valid name", "id",
             hint="use letters, digits, '_', '-' and '.', starting with a letter, digit or '_'")
    if expected_id is not None and plan_id != expected_id:
        fail(f"id {plan_id!r} differs from the file name {expected_id!r}", "id",
             hint=f"set id: {expected_id} or rename the file to {plan_id}.md")
    shape = modulatio_shape.read(doc, fail)  # None: this project's own shape
    raw_status = modulatio_shape.status_of(data.get("status", "draft"))
    try:
        status = PlanStatus(raw_status if isinstance(raw_status, str) else "")
    except ValueError:
        fail(f"unknown status {checks.show(raw_status)}", "status",
             hint="use one of " + ", ".join(s.value for s in PlanStatus))
    steps = data.get("sub_objectives")
    if shape is not None and shape.items is not None:
        steps = shape.steps()  # from the body; none when it fails closed (body_error)
    if shape is not None and shape.body_error:
        pass  # parsed, with no step: the daemon pauses it with a ticket
    elif not isinstance(steps, list) or not steps:
        what = "missing" if steps is None else "empty" if steps == [] else "not a list"
        fail(f"sub_objectives is {what}", "sub_objectives" if "sub_objectives" in data else None,
             hint="list the steps under sub_objectives:, one '- ' line each")
    if len(steps) > MAX_STEPS:
        fail(f"sub_objectives has {len(steps)} items, more than the {MAX_STEPS} allowed",
             "sub_objectives", hint="split the work into several plans")
    subs = tuple(_parse_step(fail, doc, steps, i) for i in range(len(steps)))
    index = data.get("current_index", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        fail(f"current_index {checks.show(index)} is not an integer", "current_index")
    if not 0 <= index <= len(subs) and not (shape and shape.body_error):
        fail(f"current_index {checks.show(index)} is outside 0..{len(subs)} (there are "
             f"{len(subs)} sub-objectives)", "current_index")
    priority = data.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        fail(f"priority {checks.show(priority)} is not an integer", "priority")
    checks.count(fail, priority, "priority", "priority", low=-MAX_COUNT)
    rev = data.get("rev", 0)
    if isinstance(rev, bool) or not isinstance(rev, int) or not 0 <= rev <= MAX_COUNT:
        fail(f"rev {checks.show(rev)} is not a count (the daemon writes it; remove the line)",
             "rev")
    log = data.get("reflection_log") or []
    if not isinstance(log, list):
        fail("reflection_log is not a list (the daemon writes it)", "reflection_log")
    for i, entry in enumerate(log):
        checks.check_entry(fail, doc.line_of_item(log, i), i, entry)
    checks.check_archived(fail, data.get("reflection_archived"))
    runs = data.get("runs") or []
    checks.check_runs(fail, runs)
    claim, in_flight = data.get("claim"), data.get("in_flight")
    if claim is not None:
        checks.check_claim(fail, claim)
    if data.get("retry_wait") is not None:
        checks.check_retry(fail, data["retry_wait"])
    if in_flight is not None:
        checks.check_in_flight(fail, in_flight)
    for key in ("cwd", "reflector"):
        if data.get(key) is not None:
            checks.text(fail, data[key], key, key)
    if data.get("title") is not None:
        checks.text(fail, data["title"], "title", "title")
    last_error = data.get("last_error")
    if last_error is not None:
        checks.text(fail, last_error, "last_error", "last_error", to_process=False)
    caps = modulatio_shape.caps(fail, data) if shape is not None else None
    return Plan(
        path=doc.path, id=plan_id,
        title=str(data.get("title") or (shape and shape.title) or plan_id), status=status,
        priority=priority, sub_objectives=subs, current_index=index,
        budget=Budget(**caps) if caps else _parse_budget(fail, data.get("budget")), rev=rev,
        approved_at=checks.time(fail, data, "approved_at"),
        execution_started_at=checks.time(fail, data, "execution_started_at"),
        completed_at=checks.time(fail, data, "completed_at"),
        last_error=last_error,
        claim=plain(claim), in_flight=plain(in_flight),
        reflection_log=plain(log), cwd=data.get("cwd"), reflector=data.get("reflector"),
        data=data, progress=_said(data, "progress"), last_result=_said(data, "last_result"),
        runs=plain(runs), steps_digest=_said(data, "steps_digest"),
        approved_digest=_said(data, "approved_digest"), shape=shape,
        schedule=schedule.parse_plan_schedule(doc, plan_id),
        retry_wait=plain(data.get("retry_wait")),
        reflection_archived=plain(data.get("reflection_archived")))


def _said(data: dict, key: str) -> str | None:
    """A people's-view key as text, else absent (the daemon writes it over: never refused)."""
    value = data.get(key)
    return value if isinstance(value, str) else None


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
        fail(f"budget tokens {checks.show(tokens)} is not a positive integer", "budget")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float))
                             or not 0 < cost <= MAX_COUNT):  # refuses .nan and .inf too
        fail(f"budget cost_usd {checks.show(cost)} is not a positive number", "budget")
    wall = None
    if raw.get("wall_clock") is not None:
        try:
            wall = parse_duration(raw["wall_clock"])
        except ValueError as e:
            fail(f"budget wall_clock: {e}", "budget")
    return Budget(tokens=tokens, cost_usd=float(cost) if cost is not None else None,
                  wall_clock=wall)


def _parse_step(fail: FileFault, doc: Document, steps: list, i: int) -> SubObjective:
    raw = steps[i]
    line = doc.line_of_item(steps, i)
    where = f"sub-objective {i + 1}"
    if isinstance(raw, str):
        if not raw.strip():
            fail(f"{where} is empty", line=line)
        objective = checks.text(fail, raw.strip(), where, line=line)
        return SubObjective(index=i, title=objective, kind=StepKind.AGENT, objective=objective,
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
        checks.text(fail, objective, f"{where}: objective", line=line)
        if not isinstance(agent, str) or not names.is_valid(agent):
            fail(f"{where}: agent {checks.show(agent)} is not a valid name", line=line)
        fields.update(objective=objective.strip(), agent=agent)
        default_title = objective.strip()
    elif kind is StepKind.RUN:
        run = raw["run"]
        if isinstance(run, str) and run.strip():
            fields["run"] = checks.text(fail, run, f"{where}: run", line=line)
        elif isinstance(run, list) and run and all(
                isinstance(a, str) or isinstance(a, (int, float)) and not isinstance(a, bool)
                and math.isfinite(a) for a in run):
            fields["run"] = tuple(checks.text(fail, str(a), f"{where}: run argument {n + 1}",
                                        line=line) for n, a in enumerate(run))
        else:
            fail(f"{where}: run must be a command string or a non-empty list of arguments",
                 line=line)
        default_title = run if isinstance(run, str) else " ".join(fields["run"])
    else:
        call = raw["call"]
        if not isinstance(call, str) or not _CALL.fullmatch(call):
            fail(f"{where}: call {checks.show(call)} must be 'module.path:function'", line=line)
        fields["call"] = call
        default_title = call
    title = raw.get("title", default_title)
    if not isinstance(title, str):
        fail(f"{where}: title must be a text", line=line)
    fields["title"] = checks.text(fail, title.strip() or default_title, f"{where}: title",
                                  line=line)
    if raw.get("timeout") is not None:
        try:
            fields["timeout"] = parse_duration(raw["timeout"])
        except ValueError as e:
            fail(f"{where}: timeout: {e}", line=line)
    retries = raw.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        fail(f"{where}: retries {checks.show(retries)} is not a whole number >= 0", line=line)
    fields["retries"] = checks.count(fail, retries, f"{where}: retries", line=line)
    on_failure = raw.get("on_failure", "pause")
    try:
        fields["on_failure"] = OnFailure(on_failure if isinstance(on_failure, str) else "")
    except ValueError:
        fail(f"{where}: on_failure {checks.show(on_failure)} is unknown", line=line,
             hint="use pause, abort or continue")
    rerun = raw.get("rerun_after_crash", True)
    if not isinstance(rerun, bool):
        fail(f"{where}: rerun_after_crash must be true or false", line=line)
    fields["rerun_after_crash"] = rerun
    if raw.get("cwd") is not None:
        if not isinstance(raw["cwd"], str):
            fail(f"{where}: cwd must be a path", line=line)
        fields["cwd"] = checks.text(fail, raw["cwd"], f"{where}: cwd", line=line)
    fields["env"] = checks.parse_env(fail, raw.get("env"), where, line)
    fields["retry_delay"] = schedule.parse_retry_delay(fail, raw, where, line)
    return SubObjective(**fields)



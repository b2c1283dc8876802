"""The vault at one moment, for people (`modulatio status`) and monitors (`metrics`).

What is read, and what it costs (a 10,000-plan vault must answer in well under
a second):
- plans: every `<PROJECT>/plans/*.md` is read and its status found with
  peek.peek_status, a regex on the frontmatter (1-2 us), the cheap look
  the daemon's scan takes; kept in the per-user row cache (store/rowcache.py)
  under the file's stat signature: an unchanged file is not read again. Parsed:
  `executing` plans, the PAUSED_DETAIL latest `paused` ones, a file whose status
  line is missing or unknown; approved ones only when scheduled (waiting).
- refused files: what this pass found unreadable itself, plus the daemons'
  `file_refused` lines in events.jsonl (the daemons parse every approved plan
  and cron entry) whose file still exists unchanged since the refusal. An
  approved plan no daemon has looked at yet is not judged: `modulatio
  validate` parses everything.
- daemons: the heartbeat files. A daemon is `live` while its process exists
  (on this host; elsewhere only the age can tell) and it ticked within
  stale_after(tick_seconds) (ops/daemon_rows.py); otherwise `stale`, with the reason.
- tickets: each ticket's status line by regex; open ones are parsed.
- cron: every entry is parsed (entries are few) for its next fire: the rows of
  `cron list` (ops/cron.entry_rows).
- waiting: an approved plan whose text holds a scheduling key (after,
  not_before, expires_at, retry_wait) is parsed, and listed with why no daemon
  takes it yet (ops/dependencies.why_not_yet): blocked, waiting, retry at.

Nothing is written and no lock is kept: an `executing` plan's lock is probed
(flock LOCK_NB, released at once) to tell a running plan from an orphan of a
dead daemon, the same probe the scan makes. The text for people is
status_text.py.

A warm run parses nothing but the executing and scheduled approved plans: the
details of the latest paused plans are kept in their look (under the same stat
signature), and the plan reader (core/plan.py, the YAML readers: about a third of
a warm 10,000-plan run's start-up) is imported only when a file must be parsed.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from operator import itemgetter
from pathlib import Path

from modulatio_d.core import peek
from modulatio_d.core.errors import BadFile
from modulatio_d.core.times import iso
from modulatio_d.ops import listing, parallel
from modulatio_d.ops.control_view import control
from modulatio_d.ops.daemon_rows import daemons
from modulatio_d.ops.standing_refusals import daemon_refusals
from modulatio_d.store.rowcache import RowCache
from modulatio_d.store.vault import Vault

STATUSES = ("draft", "approved", "executing", "paused", "completed", "failed", "aborted")
"""core/plan.PlanStatus's values, in its order (tests/unit/test_survey_lazy.py holds them
equal): written out, so that a warm `status` does not import the plan reader."""
INVALID = "invalid"
"""The bucket of a plan file whose status cannot be read: unparseable, or an unknown value."""

PAUSED_DETAIL = 10
"""Paused plans parsed for their progress, the most recently changed first: a
vault can hold thousands of forgotten paused plans, and a full parse costs
about 5 ms each. The others are listed by id (and with their open tickets);
`modulatio plan list --status paused` shows them all."""


@dataclass
class Survey:
    vault: str
    now: datetime
    daemons: list[dict] = field(default_factory=list, init=False)
    plans: list[dict] = field(default_factory=list, init=False)
    """Every plan file: id, project, status (the status line; `invalid` when unreadable)."""
    projects: list[str] = field(default_factory=list, init=False)
    executing: list[dict] = field(default_factory=list, init=False)
    paused: list[dict] = field(default_factory=list, init=False)
    tickets: list[dict] = field(default_factory=list, init=False)
    """Open tickets."""
    cron: list[dict] = field(default_factory=list, init=False)
    refused: list[dict] = field(default_factory=list, init=False)
    waiting: list[dict] = field(default_factory=list, init=False)
    """Approved plans no daemon takes yet: blocked, waiting for a plan or a time."""
    triggers: list[dict] = field(default_factory=list, init=False)
    control: dict = field(default_factory=dict, init=False)
    """Pause, capacity, slots in use, plans waiting for a slot (ops/control_view.py)."""

    def counts(self) -> dict:
        by_status = {s: 0 for s in (*STATUSES, INVALID)}
        by_project: dict[str, dict[str, int]] = {}
        # Counted in C, keyed in the order first seen: the dicts come out as a loop makes them.
        for (project, status), n in Counter(map(itemgetter("project", "status"),
                                                self.plans)).items():
            by_status[status] += n
            by_project.setdefault(project, {})[status] = n
        return {"total": len(self.plans), "by_status": by_status, "by_project": by_project}

    def as_dict(self) -> dict:
        return {
            "vault": self.vault, "now": iso(self.now), "daemons": self.daemons,
            "counts": self.counts(), "plans": self.plans, "executing": self.executing,
            "paused": self.paused, "tickets": self.tickets,
            "cron": self.cron, "refused": self.refused, "control": self.control,
            "waiting": self.waiting,
            "triggers": [{k: v for k, v in t.items() if k != "_error"} for t in self.triggers],
        }


def survey(vault: Vault, now: datetime, environ: dict[str, str] | None = None,
           cron: bool = True, events: list[dict] | None = None, tick=int) -> Survey:
    """Everything `status` shows; `now` is aware UTC. `events`: the `file_refused` lines
    of events.jsonl if the caller read them already (else they are read here); `tick()`
    after each plan (progress)."""
    s = Survey(vault=str(vault.root), now=now)
    s.daemons = daemons(vault, now)
    s.control = control(vault, s.daemons)
    s.projects = vault.projects()
    refused: dict[str, dict] = {}
    looks = RowCache(vault.root, "plan-peek")
    listed = {p: _listing(vault, p, refused) for p in s.projects}  # None: refused
    ready = parallel.missing(looks, [e for found in listed.values() for e in found or ()],
                             partial(_look_at, vault), tick)  # cold and many: every core
    for p, found in listed.items():
        _plans(vault, p, now, s, refused, looks, tick, found or [], ready)
    _paused_details(vault, s, refused, looks)
    looks.save(complete=None not in listed.values())
    for project in s.projects:
        _tickets(vault, project, s, refused)
    if cron:
        _cron(vault, s.projects, now, environ or {}, s, refused)
        s.triggers = _triggers(vault, refused)
    daemon_refusals(vault, refused, events)
    s.refused = sorted(refused.values(), key=lambda r: r["path"])
    tickets_by_plan: dict[str, list[str]] = {}
    for t in s.tickets:
        tickets_by_plan.setdefault(t["plan"], []).append(t["id"])
    for p in s.paused:
        p["tickets"] = tickets_by_plan.get(p["id"], [])
    return s


# --- plans ----------------------------------------------------------------------------

def _refuse(refused: dict, vault: Vault, path: str, project: str | None, kind: str,
            error: BadFile | str | list, source: str = "status") -> None:
    """`error`: a BadFile, a reason, or [reason, line] as _why gave them."""
    if isinstance(error, list):
        reason, line = error
    elif isinstance(error, BadFile):
        reason, line = _why(error)
    else:
        reason, line = str(error), None
    refused[path] = {"path": os.path.relpath(path, vault.root), "project": project,
                     "kind": kind, "line": line, "reason": reason, "source": source}


def _why(error: BadFile) -> list:
    """[reason, line] of a refusal: what a look keeps of a paused plan that does not parse."""
    return [error.reason + (f" ({error.hint})" if error.hint else ""), error.line]


def _listing(vault: Vault, project: str, refused: dict) -> list | None:
    """The project's plan files by name; None when its plans/ folder is refused."""
    folder = vault.plans_dir(project)
    try:
        vault.check_folder(folder)
    except BadFile as e:
        _refuse(refused, vault, str(folder), project, "folder", e)
        return None
    return listing.files(vault, project)


def _look_at(vault: Vault, path: str, st: os.stat_result) -> dict | None:
    """A plan file's look, for the pool (None: the loop reads it again and tells why)."""
    try:
        text = vault.read(path)[1]
    except (BadFile, OSError):
        return None
    return {"status": peek.peek_status(text), "scheduled": _SCHEDULED.search(text) is not None}


def _plans(vault: Vault, project: str, now: datetime, s: Survey, refused: dict,
           looks: RowCache, tick, found: list, ready: dict[str, dict]) -> None:
    """The project's plans into `s`; `ready`: looks the pool made (ops/parallel.py)."""
    get, plans = looks.get, s.plans
    for entry in found:
        look = get(entry.path, entry.st)
        if look is not None and look["status"] in _COUNTED:  # most plans: counted only
            tick()
            plans.append({"id": entry.name[:-3], "project": project, "status": look["status"]})
        else:
            _plan(vault, project, now, s, refused, looks, tick, entry, look, ready)


_COUNTED = frozenset({"draft", "completed", "failed", "aborted"})
"""The statuses of a plan `status` only counts: not executing (parsed), paused (listed,
the latest detailed), approved (parsed when scheduled) nor unknown (parsed)."""


def _plan(vault: Vault, project: str, now: datetime, s: Survey, refused: dict,
          looks: RowCache, tick, entry, look: dict | None, ready: dict[str, dict]) -> None:
    path, plan_id, text = entry.path, entry.name[:-3], None
    if look is None and (look := ready.get(path)) is not None:
        looks.put(path, entry.st, look)  # the pool ticked for it
    else:
        tick()
    if look is None or _to_parse(look):
        if (text := _read(vault, path, project, s, refused)) is None:
            return
        look = {"status": peek.peek_status(text),
                "scheduled": _SCHEDULED.search(text) is not None}
        looks.put(path, entry.st, look)
    status = look["status"]
    if status == "paused":
        s.paused.append({"id": plan_id, "project": project, "detail": False,
                         "path": path, "_mtime": entry.st.st_mtime, "_st": entry.st,
                         "_look": look})
    elif status == "approved" and look["scheduled"]:
        plan = _parse(vault, path, plan_id, project, text, refused)
        from modulatio_d.ops.dependencies import why_not_yet  # the plan reader: if any
        why = why_not_yet(vault, project, plan, now) if plan is not None else None
        if why:
            s.waiting.append({"id": plan_id, "project": project, "reason": why})
    elif status is None or status not in STATUSES or status == "executing":
        plan = _parse(vault, path, plan_id, project, text, refused)
        if plan is None:
            status = status if status in STATUSES else INVALID
        else:
            status = plan.status.value
            if status == "executing":
                from modulatio_d.ops.plan_progress import executing
                s.executing.append(executing(plan, project, now))
    s.plans.append({"id": plan_id, "project": project, "status": status})


def _to_parse(look: dict) -> bool:
    """Whether a plan of this look is parsed: executing, approved with a scheduling key,
    or a status line missing or not a status."""
    status = look.get("status")
    return status not in STATUSES or status == "executing" or (
        status == "approved" and look.get("scheduled") is not False)


def _read(vault: Vault, path: str, project: str, s: Survey, refused: dict) -> str | None:
    """The plan's text; None when gone (an editor's save renamed it away since the listing)
    or refused (then told, and listed invalid)."""
    try:
        return vault.read(path)[1]
    except FileNotFoundError:
        return None
    except BadFile as e:
        _refuse(refused, vault, path, project, "plan", e)
        s.plans.append({"id": Path(path).stem, "project": project, "status": INVALID})
        return None


_SCHEDULED = re.compile(r"^(?:after|not_before|expires_at|retry_wait)\s*:", re.M)


def _triggers(vault: Vault, refused: dict) -> list[dict]:
    if not any(next(vault.files(p, "triggers"), None) for p in vault.projects()):
        return []  # none: no trigger reader (nor croniter, which it brings) to import
    from modulatio_d.ops.triggers import rows

    out = []
    for row in rows(vault):
        if row["valid"]:
            out.append(row)
        else:
            _refuse(refused, vault, row["path"], row["project"], "trigger", row["_error"])
    return out


def _parse(vault: Vault, path: str, plan_id: str, project: str, text: str, refused: dict):
    plan = _parsed(path, plan_id, text)
    if isinstance(plan, list):
        _refuse(refused, vault, path, project, "plan", plan)
        return None
    return plan


def _parsed(path: str, plan_id: str, text: str):
    """The plan the text is, or [reason, line] when it does not parse (the plan reader is
    imported here: a warm `status` parses nothing but executing and scheduled plans)."""
    from modulatio_d.core import markdown
    from modulatio_d.core.plan import parse_plan

    try:
        return parse_plan(markdown.load(Path(path), text), plan_id)
    except BadFile as e:
        return _why(e)


def _paused_details(vault: Vault, s: Survey, refused: dict, looks: RowCache) -> None:
    """Parse the PAUSED_DETAIL most recently changed paused plans, for their progress.
    What a parse gave (the detail, or why the file does not parse) is kept in the
    plan's look, under the signature it was listed with: an unchanged file is not read
    again."""
    s.paused.sort(key=lambda p: -p["_mtime"])
    kept = [(row.pop("_look"), row.pop("_st"), row.pop("_mtime")) for row in s.paused]
    for row, (look, st, _) in zip(s.paused[:PAUSED_DETAIL], kept, strict=False):
        detail = look.get("paused")
        if detail is None:
            try:
                _, text = vault.read(row["path"])
            except (FileNotFoundError, BadFile):
                continue
            detail = _paused(row, text)
            looks.put(row["path"], st, {**look, "paused": detail})
        if isinstance(detail, list):
            _refuse(refused, vault, row["path"], row["project"], "plan", detail)
        else:
            row.update(detail, detail=True)
    s.paused.sort(key=lambda p: (p["project"], p["id"]))


def _paused(row: dict, text: str) -> dict | list:
    """A paused plan's detail row (ops/plan_progress.py), or [reason, line]."""
    plan = _parsed(row["path"], row["id"], text)
    if isinstance(plan, list):
        return plan
    from modulatio_d.ops.plan_progress import paused

    return paused(plan, row["project"])


# --- tickets ----------------------------------------------------------------------------

def _tickets(vault: Vault, project: str, s: Survey, refused: dict) -> None:
    for entry in listing.files(vault, project, "tickets"):
        from modulatio_d.store.tickets import read_ticket  # a ticket there: its reader

        try:
            _, text = vault.read(entry.path)
            if peek.peek(text, "status") == "closed":
                continue
            t = read_ticket(vault, Path(entry.path))
        except FileNotFoundError:
            continue
        except BadFile as e:
            _refuse(refused, vault, entry.path, project, "ticket", e)
            continue
        if t.open:
            s.tickets.append({"id": t.id, "project": project, "plan": t.plan,
                              "severity": t.severity.value, "decision": t.decision.value,
                              "reason": t.reason, "created_at": iso(t.created_at),
                              "path": str(t.path)})


# --- cron -------------------------------------------------------------------------------

def _cron(vault: Vault, projects: list[str], now: datetime, environ: dict, s: Survey,
          refused: dict) -> None:
    """The rows of `cron list`, soonest next fire first; bad entries go to refused."""
    if not any(next(vault.files(p, "cron"), None) for p in projects):
        return  # no cron: no schedule math to import
    from modulatio_d.ops.cron import entry_rows
    from modulatio_d.store.zones import host_zone

    s.cron = entry_rows(vault, now, host_zone(environ), refused=partial(_refuse, refused, vault))
    s.cron.sort(key=lambda r: (r["next_fire_ts"] is None, r["next_fire_ts"] or 0, r["id"]))

"""What `validate` needs of one plan file, as plain data that a cache can keep.

`validate` checked every plan that had not ended on every run: a full parse (0.3-2.5 ms
a plan) for what is, per file, a handful of values. Those values are a pure function of
the file's bytes (and its path): the plan's status, its `after` list, its reflector and
`cwd`, the agent and `cwd` of each step still to run, with their lines; or, for a file that
does not read, its BadFile. So they are kept in the per-user row cache
(store/rowcache.py, use `plan-facts`) under the file's stat signature, and a run whose
file did not change takes them from there, unread.

What is never cached is anything that depends on something other than the file: whether a
`cwd` folder exists, whether a reflector is on PATH or executable, whether an agent is in
the config, built in or a plugin, the `after` plans that exist, the time. Those checks
run again on every `validate` (a stat or a dictionary look-up each, memoized per run), so
a verdict changes as soon as the config, a folder, PATH or another plan does, with no
invalidation to get wrong. The cache's key also carries the code's version (a cache of
another release is empty) and FACTS, bumped whenever the shape below changes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modulatio_d.core.errors import BadFile, FileUnusable
from modulatio_d.core.markdown import line_of
from modulatio_d.core.plan import FINAL, Plan, StepKind
from modulatio_d.ops import parallel
from modulatio_d.ops.lazy_reader import read_plan  # a warm `validate` imports no reader
from modulatio_d.store import fs
from modulatio_d.store.rowcache import RowCache
from modulatio_d.store.vault import Vault

FACTS = 1
USE = f"plan-facts-{FACTS}"
HEAD = 2
"""The file line of a plan's first frontmatter line: the opening `---` is always one line."""


@dataclass(frozen=True)
class Step:
    index: int
    line: int | None
    agent: str | None
    """The agent of an agent step; None for any other kind."""
    cwd: str | None


@dataclass(frozen=True)
class Facts:
    path: Path
    final: bool
    after: tuple[str, ...]
    after_line: int | None
    reflector: str | tuple[str, ...] | None
    reflector_line: int | None
    cwd: str | None
    cwd_line: int | None
    body_error: str | None
    body_error_line: int | None
    steps: tuple[Step, ...]
    """The steps still to run (from current_index on)."""


def of_plan(plan: Plan) -> Facts:
    data, steps = plan.data, plan.data.get("sub_objectives")
    return Facts(
        path=plan.path, final=plan.status in FINAL, after=tuple(plan.schedule.after),
        after_line=line_of(data, "after", HEAD),
        reflector=plan.reflector, reflector_line=line_of(data, "reflector", HEAD),
        cwd=plan.cwd, cwd_line=line_of(data, "cwd", HEAD),
        body_error=plan.shape.body_error if plan.shape is not None else None,
        body_error_line=plan.shape.body_error_line if plan.shape is not None else None,
        steps=tuple(Step(s.index, _item_line(steps, s.index),
                         s.agent if s.kind is StepKind.AGENT else None, s.cwd)
                    for s in plan.sub_objectives[plan.current_index:]))


def _item_line(seq: object, index: int) -> int | None:
    try:
        return seq.lc.item(index)[0] + HEAD  # type: ignore[attr-defined]
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def to_row(f: Facts) -> dict:
    if f.final and not f.after:  # all validate needs of it (ops/validate.py plan_file)
        return {"final": True, "after": []}
    return {"final": f.final, "after": list(f.after), "after_line": f.after_line,
            "reflector": list(f.reflector) if isinstance(f.reflector, tuple) else f.reflector,
            "reflector_line": f.reflector_line, "cwd": f.cwd, "cwd_line": f.cwd_line,
            "body_error": f.body_error, "body_error_line": f.body_error_line,
            "steps": [[s.index, s.line, s.agent, s.cwd] for s in f.steps]}


def bad_row(e: BadFile) -> dict:
    return {"bad": [e.reason, e.line, e.hint]}


def from_row(path: Path, row: dict) -> Facts | BadFile | None:
    """The Facts (or the BadFile) a cached row holds; None when the row is not one this
    code wrote (then the file is read again)."""
    try:
        if "bad" in row:
            reason, line, hint = row["bad"]
            return BadFile(path, reason, line, hint)
        r = row["reflector"]
        return Facts(path, bool(row["final"]), tuple(row["after"]), row["after_line"],
                     tuple(r) if isinstance(r, list) else r, row["reflector_line"],
                     row["cwd"], row["cwd_line"], row["body_error"], row["body_error_line"],
                     tuple(Step(*s) for s in row["steps"]))
    except (KeyError, TypeError, ValueError):
        return None


def same_checks(project: str, row: dict) -> tuple | None:
    """What `validate`'s checks of a plan depend on, from its cached row, beside the run's
    surroundings (config, folders, PATH): the project (a relative reflector or `cwd` is
    looked for in its folder), the reflector, `cwd`, and the agent and `cwd` of each step
    still to run, in order (the first one's missing `cwd` is an error, a later one's a
    warning). Two plans of one key get the same verdict save their path and lines. None
    for a row with a body error (always a problem) or not of this code's shape."""
    try:
        if row["body_error"] is not None or row["final"]:
            return None
        r = row["reflector"]
        key = (project, tuple(r) if isinstance(r, list) else r, row["cwd"],
               tuple((s[2], s[3]) for s in row["steps"]))
        hash(key)
        return key
    except (KeyError, TypeError, IndexError):
        return None


def read_row(vault: Vault, path: str, st: os.stat_result | None) -> dict | None:
    """The row of one plan file read now: its Facts', or its BadFile's when the bytes are
    to blame; None for a refusal of the file's kind or access (a link, a folder, no
    permission) or a failed read: never kept, the caller reads it again to tell why."""
    try:
        return to_row(of_plan(read_plan(vault, Path(path)).plan))
    except BadFile as e:
        if isinstance(e, (OSError, FileUnusable)) or st is None or not stat.S_ISREG(st.st_mode):
            return None
        return bad_row(e)
    except OSError:
        return None


def prepare(vault: Vault, cache: RowCache, listing: Callable[[str, str], list[fs.Entry]],
            tick: Callable[[], None]) -> dict[str, dict]:
    """path -> row of the plan files `cache` has no row for, parsed on every core when
    they are many (ops/parallel.py); {} when they are few: each is then read in its turn.
    `listing(project, "plans")`: the folder's entries. `tick()` once a file parsed here."""
    entries = []
    for project in vault.projects():
        try:  # a refused folder's files are not read (validate tells why)
            vault.check_folder(vault.project_dir(project))
            vault.check_folder(vault.plans_dir(project))
        except BadFile:
            continue
        entries += listing(project, "plans")
    return parallel.missing(cache, entries, lambda p, st: read_row(vault, p, st), tick,
                            preload=("modulatio_d.store.plan_file",))

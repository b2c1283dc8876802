"""Plans as rows and details for people and scripts (`plan list`, `plan show`).

`plan list` on a warm row cache parses nothing, so this module imports only what the
listing needs: the plan reader comes through ops/lazy_reader.py, the first time a file
has to be parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from modulatio_d.core.errors import BadFile
from modulatio_d.core.peek import CANNOT_TELL, peek_status
from modulatio_d.core.times import format_time
from modulatio_d.ops import listing, parallel
from modulatio_d.ops.lazy_reader import READER, read_plan, reader
from modulatio_d.store.rowcache import RowCache
from modulatio_d.store.vault import Vault

if TYPE_CHECKING:
    from modulatio_d.core.plan import Plan


def plan_row(plan: Plan, project: str) -> dict:
    people = reader("modulatio_d.core.people")
    return {"id": plan.id, "project": project, "title": plan.title, "status": plan.status.value,
            "priority": plan.priority, "done": plan.done, "total": plan.total,
            "path": str(plan.path), "progress": people.progress(plan),
            "last_result": people.last_result(plan)}


def list_plans(vault: Vault, project: str | None = None, status: str | None = None,
               tick: Callable[[], None] = lambda: None) -> list[dict]:
    """Every plan's row; a file whose stat signature has not moved since a command last
    read it gives its row from the per-user cache (store/rowcache.py), unread. With
    `status`, a file whose status line says another status is not parsed: what its line
    says is kept instead (a row {"peeked": status}), and a later list without `status`
    parses it. `tick()` after each plan (progress)."""
    return [row for _, row in _listed(vault, project, status, tick)]


def list_json(vault: Vault, project: str | None = None, status: str | None = None,
              tick: Callable[[], None] = lambda: None) -> str:
    """`json.dumps(list_plans(...), indent=2)`, exactly. Each row's text (and status) is
    kept in its own per-user cache (`plan-json`), under the signature its row is kept
    under: a warm `plan list --json` joins the texts instead of encoding ten values a
    row again (25 of the 35 ms that took at 10,000 plans), and when every file listed
    has its text, it does not even load the rows."""
    texts = RowCache(vault.root, "plan-json")
    out = _kept_texts(vault, texts, project, status)
    if out is None:  # a file changed, or new: from the rows, keeping the texts made
        listed, out = _listed(vault, project, status, tick), []
        for entry, row in listed:
            kept = texts.get(entry.path, entry.st)
            if _whole(kept):
                out.append(kept["json"])
                continue
            if (text := row_json(row)) is None:
                return rows_json([row for _, row in listed])  # json's own way, whole
            texts.put(entry.path, entry.st, {"json": text, "status": row["status"]})
            out.append(text)
    texts.save(complete=project is None and status is None)
    return _joined(out)


def _kept_texts(vault: Vault, texts: RowCache, project: str | None,
                status: str | None) -> list[str] | None:
    """The kept texts of the plans list_plans would list, in its order; None as soon as
    a file has none (then the rows decide, as for `plan list`)."""
    out = []
    for p in [project] if project else vault.projects():
        for entry in listing.files(vault, p):
            kept = texts.get(entry.path, entry.st)
            if not _whole(kept):
                return None
            if status is None or kept["status"] == status:
                out.append(kept["json"])
    return out


def _whole(kept: dict | None) -> bool:
    """Whether a kept text is one this code writes: the text and its row's status."""
    return kept is not None and type(kept.get("json")) is str and \
        type(kept.get("status")) is str


def _listed(vault: Vault, project: str | None, status: str | None,
            tick: Callable[[], None]) -> list[tuple[listing.Entry, dict]]:
    """(entry, row) of every plan list_plans lists, in its order."""
    cache = RowCache(vault.root, "plan-rows")
    found: list[tuple[str, listing.Entry, dict | None]] = []
    for p in [project] if project else vault.projects():
        for entry in listing.files(vault, p):
            row = cache.get(entry.path, entry.st)
            if row is not None and "peeked" in row and not _other(row["peeked"], status):
                row = None  # only its status line was looked at, and it may be asked for
            if row is not None:
                tick()
            found.append((p, entry, row))
    # The rest are read, on every core past parallel.MIN_FILES: the same rows either way.
    project_of = {e.path: p for p, e, row in found if row is None}
    made = dict(parallel.rows(list(project_of), lambda path: _row(
        vault, Path(path), project_of[path], status), tick, preload=READER))
    rows = []
    for _, entry, row in found:
        if row is None:
            row = made[entry.path]
            cache.put(entry.path, entry.st, row)
        if "peeked" not in row and (status is None or row["status"] == status):
            rows.append((entry, row))
    cache.save(complete=project is None)
    return rows


def rows_json(rows: list[dict]) -> str:
    """`json.dumps(rows, indent=2)`, exactly: each row's text (row_json) joined, or json's
    own way (its pure-Python encoder, with an indent) when a row is not a plain one."""
    texts = [row_json(row) for row in rows]
    if None in texts:
        import json

        return json.dumps(rows, indent=2)
    return _joined(texts)


def _joined(texts: list[str]) -> str:
    return "[\n  " + ",\n  ".join(texts) + "\n]" if texts else "[]"


def row_json(row: dict) -> str | None:
    """One row as `json.dumps(rows, indent=2)` writes it in the list, by json's C encoder
    (with an indent, json's own encoder is the pure-Python one: 2 s for 100,000 rows;
    without, its item separator written as given carries the items' indent); None for
    an empty row or one holding more than strings, whole numbers, booleans and nulls
    (the list is then written json's own way)."""
    encode = _encoder()
    if encode is None or not row or not set(map(type, row.values())) <= _SCALARS:
        return None
    return "{\n    " + "".join(encode(row, 0))[1:-1] + "\n  }"


_SCALARS = {str, int, bool, type(None)}


@cache
def _encoder():
    """What json.dumps(rows, separators=(",\\n    ", ": ")) runs (None without json's C
    part); made once, and only by `plan list --json` (json is not imported before)."""
    from json import encoder

    return encoder.c_make_encoder and encoder.c_make_encoder(
        None, None, encoder.encode_basestring_ascii, None, ": ", ",\n    ", False, False,
        True)


def _other(peeked: object, status: str | None) -> bool:
    """Whether a file whose status line says `peeked` is surely not of `status` (a broken
    file's status line may read fine: for `invalid`, every file is parsed)."""
    return bool(status) and status != "invalid" and peeked not in (status, None, CANNOT_TELL)


def _row(vault: Vault, path: Path, project: str, status: str | None) -> dict:
    if status and status != "invalid":
        status_of = reader("modulatio_d.core.modulatio_shape").status_of
        try:
            peeked = status_of(peek_status(vault.read(path)[1]))  # done: completed
            if _other(peeked, status):
                return {"peeked": peeked}  # not one asked for: not parsed
        except (BadFile, OSError):
            pass
    try:
        return plan_row(read_plan(vault, path).plan, project)
    except BadFile as e:
        return {"id": path.stem, "project": project, "title": "", "status": "invalid",
                "priority": 0, "done": 0, "total": 0, "path": str(path), "error": str(e)}


def show_plan(vault: Vault, plan_id: str, now: datetime | None = None) -> dict:
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops.dependencies import status_of, why_not_yet
    from modulatio_d.store import reflections, usage

    project, path = vault.find("plans", plan_id)
    plan = read_plan(vault, path).plan
    info = plan_row(plan, project)
    sched = plan.schedule
    info.update(
        waiting=why_not_yet(vault, project, plan, now or utcnow()),
        after={d: status_of(vault, project, d) or "missing" for d in sched.after},
        not_before=_jsonable(sched.not_before), expires_at=_jsonable(sched.expires_at),
        concurrency_key=sched.concurrency_key, retry_wait=_jsonable(plan.retry_wait),
    )
    try:  # the entries moved out of the plan file too (store/reflections.py)
        log, problem = reflections.whole(plan), None
    except (BadFile, OSError) as e:
        log, problem = plan.reflection_log, f"only the last {len(plan.reflection_log)} " \
            f"reflection entries are shown: {e}"
    info.update(
        sub_objectives=[s.title for s in plan.sub_objectives],
        marks=_marks(plan, log),
        runs_dir=str(path.with_suffix(".runs")),
        reflection_log=_jsonable(log), reflection_log_problem=problem,
        claim=_jsonable(plan.claim),
        runs=_jsonable(plan.runs),
        last_error=plan.last_error,
        usage=usage.totals(usage.usage_path(path)).as_dict(),
    )
    if plan.shape is not None:  # a Modulatio-shaped file (core/modulatio_shape.py)
        info["modulatio"] = {"file_status": plan.shape.status_word,
                             "tokens_used": plan.shape.tokens_used,
                             "cost_usd_used": plan.shape.cost_usd_used,
                             "body_error": plan.shape.body_error}
    return info


def _marks(plan: Plan, log: list[dict]) -> list[str]:
    """Per step: `x` done, `!` done but its last attempt failed (on_failure: continue),
    `>` next (running when the plan executes), ` ` not yet."""
    last: dict[int, str] = {}
    for e in log:
        if isinstance(e.get("index"), int):
            last[e["index"]] = str(e.get("outcome"))
    out = []
    for i in range(plan.total):
        if i < plan.done:
            out.append("x" if last.get(i, "ok") == "ok" else "!")
        else:
            out.append(">" if i == plan.done else " ")
    return out


def _jsonable(value: object) -> object:
    """Daemon keys as JSON can hold them: a time a person wrote unquoted (a YAML
    timestamp) becomes the text the daemon would have written."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return format_time(value)
    return value

"""Plans as rows and details for people and scripts (`plan list`, `plan show`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from modulatio_d.core.errors import BadFile
from modulatio_d.core.modulatio_shape import status_of
from modulatio_d.core.peek import CANNOT_TELL, peek_status
from modulatio_d.core.plan import Plan
from modulatio_d.core.times import format_time
from modulatio_d.store import usage
from modulatio_d.store.plan_file import read_plan
from modulatio_d.store.vault import Vault


def plan_row(plan: Plan, project: str) -> dict:
    return {"id": plan.id, "project": project, "title": plan.title, "status": plan.status.value,
            "priority": plan.priority, "done": plan.done, "total": plan.total,
            "path": str(plan.path)}


def list_plans(vault: Vault, project: str | None = None, status: str | None = None) -> list[dict]:
    rows = []
    for p in [project] if project else vault.projects():
        for entry in sorted(vault.files(p, "plans"), key=lambda e: e.name):
            path = Path(entry.path)
            if status and status != "invalid":  # a broken file's status line may read fine
                try:
                    peeked = status_of(peek_status(vault.read(path)[1]))  # done: completed
                    if peeked not in (status, None, CANNOT_TELL):
                        continue
                except (BadFile, OSError):
                    pass
            try:
                row = plan_row(read_plan(vault, path).plan, p)
            except BadFile as e:
                row = {"id": path.stem, "project": p, "title": "", "status": "invalid",
                       "priority": 0, "done": 0, "total": 0, "path": str(path),
                       "error": str(e)}
            if status is None or row["status"] == status:
                rows.append(row)
    return rows


def show_plan(vault: Vault, plan_id: str) -> dict:
    project, path = vault.find("plans", plan_id)
    plan = read_plan(vault, path).plan
    info = plan_row(plan, project)
    info.update(
        sub_objectives=[s.title for s in plan.sub_objectives],
        reflection_log=_jsonable(plan.reflection_log),
        claim=_jsonable(plan.claim),
        last_error=plan.last_error,
        usage=usage.totals(usage.usage_path(path)).as_dict(),
    )
    if plan.shape is not None:  # a Modulatio-shaped file (core/modulatio_shape.py)
        info["modulatio"] = {"file_status": plan.shape.status_word,
                             "tokens_used": plan.shape.tokens_used,
                             "cost_usd_used": plan.shape.cost_usd_used,
                             "body_error": plan.shape.body_error}
    return info


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

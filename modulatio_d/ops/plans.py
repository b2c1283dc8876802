"""What `plan new` does, as a plain function of a vault and a time.

The status commands (`plan approve|pause|resume|abort|retry`, `project resume`)
are store.plan_file.change_status: a ticket's decision applies the same change.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from modulatio_d.core import markdown, names
from modulatio_d.core.errors import UsageError
from modulatio_d.core.plan import parse_plan
from modulatio_d.store import fs
from modulatio_d.store.vault import Vault, create_numbered, next_number


def next_plan_number(vault: Vault, project: str) -> int:
    """One more than the highest number a plan of the project ever had.

    The daemon's records count too, so a deleted plan's id is never reused
    with its old record.
    """
    return next_number(plan_prefix(vault, project),
                       (vault.plans_dir(project), vault.records_dir(project)))


def plan_prefix(vault: Vault, project: str) -> str:
    """`<PROJECT>-P-`; in a folder of Modulatio's (`tst/` holding TST-PLAN-001.md) its
    own `<CODE>-PLAN-`, so that new plans follow the ids already there."""
    theirs = f"{project.upper()}-PLAN-"
    if project != project.upper():
        try:
            found = fs.names(vault.plans_dir(project))
        except OSError:
            found = []
        if any(re.fullmatch(re.escape(theirs) + r"\d+\.md", n) for n in found):
            return theirs
    return f"{project}-P-"


def new_plan(vault: Vault, project: str, title: str, steps: list[tuple[str, str]],
             approve: bool, now: datetime, extra: dict | None = None) -> tuple[str, Path]:
    """Create `<PROJECT>/plans/<PROJECT>-P-<NNN>.md` with the next free number.

    `steps` are ("run", command) or ("objective", text) in order; with none the
    title is the one text objective. `extra`: more keys (priority, budget,
    sub_objectives as a plan file holds them...), the text checked by the plan
    reader before it is written (BadFile naming the key). Created with O_EXCL: two
    at once never collide.
    """
    names.check("project code", project)
    if not title.strip():
        raise UsageError("the plan needs a title")
    subs = [{"run": v} if kind == "run" else v for kind, v in steps] or [title.strip()]

    def text_for(plan_id: str) -> str:
        keys: dict[str, object] = {"id": plan_id, "title": title.strip(),
                                   "status": "approved" if approve else "draft",
                                   "priority": 50, "created_at": now}
        if approve:
            keys["approved_at"] = now
        keys.update({"sub_objectives": subs, "current_index": 0, "reflection_log": []})
        keys.update(extra or {})
        text = markdown.set_keys("---\n---\n", keys) + "\n"
        if extra:  # keys from elsewhere (the HTTP API): refused here, never written bad
            parse_plan(markdown.load(vault.plans_dir(project) / f"{plan_id}.md", text), plan_id)
        return text

    return create_numbered(vault.plans_dir(project), plan_prefix(vault, project), 3,
                           next_plan_number(vault, project), text_for)

"""What `plan new` does, as a plain function of a vault and a time.

The status commands (`plan approve|pause|resume|abort|retry`, `project resume`)
are store.plan_file.change_status: a ticket's decision applies the same change.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from modulatio_d.core import digest, markdown, names
from modulatio_d.core.errors import UsageError
from modulatio_d.core.plan import DAEMON_KEYS, parse_plan
from modulatio_d.store import fs
from modulatio_d.store.retention import archive_folders
from modulatio_d.store.vault import Vault, create_numbered, next_number


def next_plan_number(vault: Vault, project: str) -> int:
    """One more than the highest number a plan of the project ever had.

    The daemon's records (`<id>.json`, `<id>.log.jsonl`, crash counts: kept when a
    project folder is deleted) and the archive (store/retention.py) count too, so a
    deleted or archived plan's id is never reused: a record would take a new plan
    with that id for the old one (store/owned_keys.py, `belongs`, tells them apart
    as well as it can).
    """
    return next_number(plan_prefix(vault, project),
                       (vault.plans_dir(project), vault.records_dir(project),
                        vault.records_dir(project) / "crashes",
                        *archive_folders(vault, project)))


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
             approve: bool, now: datetime, extra: dict | None = None,
             schedule: dict[str, object] | None = None) -> tuple[str, Path]:
    """Create `<PROJECT>/plans/<PROJECT>-P-<NNN>.md` with the next free number.

    `steps` are ("run", command) or ("objective", text) in order; with none the
    title is the one text objective. `extra`: more keys (priority, budget,
    sub_objectives as a plan file holds them...), the text checked by the plan
    reader before it is written (BadFile naming the key). Created with O_EXCL: two
    at once never collide. `schedule`: not_before, expires_at, after (docs/plan-file.md,
    "Scheduling").
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
        keys.update(schedule or {})
        keys.update({"sub_objectives": subs, "current_index": 0, "reflection_log": []})
        keys.update(extra or {})
        text = markdown.set_keys("---\n---\n", keys) + "\n"
        if extra:  # keys from elsewhere (the HTTP API): refused here, never written bad
            parse_plan(markdown.load(vault.plans_dir(project) / f"{plan_id}.md", text), plan_id)
        if approve:  # bound to its steps like any approval (core/digest.py)
            plan = parse_plan(markdown.load(Path(f"{plan_id}.md"), text), plan_id)
            text = markdown.set_keys(text, {"approved_digest": digest.of_plan(
                plan.sub_objectives)}, order=DAEMON_KEYS)
        return text

    return create_numbered(vault.plans_dir(project), plan_prefix(vault, project), 3,
                           next_plan_number(vault, project), text_for)

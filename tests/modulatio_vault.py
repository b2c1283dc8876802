"""A vault in the exact shape Modulatio writes, built from its field list (issue 17).

Plans are written the way its writers do: `yaml.safe_dump(sort_keys=False)` of the
frontmatter, `---` lines, a blank line, the body. Folders are lower case (`tst/`),
ids upper case (`TST-PLAN-001`), times `+00:00` ISO with microseconds (quoted by
safe_dump, as they are there), sub-objectives in the body. Two plans in each of its
statuses; TST-PLAN-006 is left `executing` at `current_index: 1` by a dead process
(its empty `.lock` file stays); reflection entries are block style. A
`cron-config.json` holds one job of each schedule form.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

PROJECT = "tst"
T0 = "2026-11-30T09:12:44.123456+00:00"
APPROVED = "2026-11-30T09:20:00.000001+00:00"
STARTED = "2026-11-30T09:21:07.654321+00:00"


def body(title: str, n: int = 2, sep: str = "—") -> str:
    items = []
    for i in range(1, n + 1):
        items.append(f"**{i}. Step {i} of **{title}**** {sep} do part {i} with **care**\n"
                     f"   - Files: src/part{i}.py\n"
                     f"   - Done when: part {i} works\n")
    return (f"# {title}\n\n### Diagnostic\nWhy this plan exists.\n\n"
            f"### Sub-objectives\n\n" + "".join(items) +
            "\n### Risks\n- none known\n")


def transition(to: str, by: str, at: str, note: str | None = None) -> dict:
    return {"to": to, "decided_by": by, "decided_at": at, "note": note}


def plan_meta(number: int, status: str, **more: object) -> dict:
    meta: dict = {"id": f"TST-PLAN-{number:03d}", "project_code": PROJECT, "created_at": T0,
                  "agent_id": "leader", "source_message": f"please do thing {number}",
                  "attachments": [{"kind": "file", "name": "notes.md", "path": "a/notes.md"}],
                  "status": status}
    if status != "draft":
        meta["status_transitions"] = [transition("approved", "user", APPROVED)]
    meta.update(more)
    return meta


def write_plan(root: Path, meta: dict, text: str) -> Path:
    path = root / PROJECT / "plans" / f"{meta['id']}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
                    + "---\n\n" + text.rstrip() + "\n")
    return path


REFLECTION = [{"outcome": "continue", "after_index": 1,
               "rationale": "step 1 went fine;\nthe next one can start"}]
RUNNING = {"execution_started_at": STARTED, "current_index": 1, "reflection_log": REFLECTION,
           "spawned_kickoffs": [{"sub_objective_index": 0, "run_id": "r-1", "summary": "ok"}],
           "tokens_used": 1200, "cost_usd_used": 0.0125}


def build(root: Path) -> dict[str, Path]:
    """Write the Modulatio files into `root` (a vault made by `modulatio init`, whose
    config names the default agent). Returns the plans by role."""
    plans = {
        "draft": write_plan(root, plan_meta(1, "draft"), body("Draft one")),
        "draft2": write_plan(root, plan_meta(2, "draft", max_tokens=5000), body("Draft two")),
        "approved": write_plan(root, plan_meta(3, "approved", approved_at=APPROVED,
                                               max_tokens=10_000_000, max_cost_usd=50.0,
                                               max_wall_clock_min=600),
                               body("Run me", 2, "—")),
        "approved2": write_plan(root, plan_meta(4, "approved", approved_at=APPROVED,
                                                priority=1), body("Run me too", 1, ":")),
        "orphan": write_plan(root, plan_meta(
            6, "executing", approved_at=APPROVED, **RUNNING,
            status_transitions=[transition("approved", "user", APPROVED),
                                transition("executing", "daemon", STARTED)]),
            body("Left running", 3, "–")),
        "paused": write_plan(root, plan_meta(7, "paused", approved_at=APPROVED, **RUNNING),
                             body("Paused one", 2, "-")),
        "paused2": write_plan(root, plan_meta(8, "paused", max_wall_clock_min=30),
                              body("Paused two")),
        "done": write_plan(root, plan_meta(9, "done", approved_at=APPROVED,
                                           **{**RUNNING, "current_index": 2}),
                           body("Finished")),
        "done2": write_plan(root, plan_meta(10, "done"), body("Finished too", 1)),
        "declined": write_plan(root, plan_meta(11, "declined"), body("Said no")),
        "declined2": write_plan(root, plan_meta(12, "declined"), body("Said no too")),
    }
    (root / PROJECT / "plans" / "TST-PLAN-006.lock").write_text("")  # the dead process's
    (root / "cron-config.json").write_text(json.dumps({"jobs": CRON_JOBS}, indent=2))
    return plans


def _job(n: int, schedule: str, next_run: str) -> dict:
    return {"id": f"2026113009124412345{n}abc12{n}", "name": f"job {n}",
            "description": f"Job {n}, every {schedule}.", "schedule": schedule,
            "project_code": "TST", "objective": f"Kick off job {n}", "priority": 5,
            "enabled": True, "jt_id": None, "jt_params": None, "on_refused": None,
            "created": "2026-11-30T09:12:44+00:00", "next_run": next_run,
            "last_run": None, "last_status": None}


CRON_JOBS = [
    _job(1, "daily 06:00", "2025-01-02T06:00:00+00:00"),
    _job(2, "weekly mon 09:00", "2025-01-06T09:00:00+00:00"),
    _job(3, "monthly 1 07:30", "2025-02-01T07:30:00+00:00"),
    _job(4, "hourly :15", "2025-01-01T10:15:00+00:00"),
    _job(5, "30m", "2025-01-01T10:00:00+00:00"),
    _job(6, "6h", "2025-01-01T12:00:00+00:00"),
    _job(7, "1d", "2025-01-02T00:00:00+00:00"),
]
"""One job of each schedule form. Their next_run values are relative to NOW_ISO."""
NOW_ISO = "2025-01-01T09:59:00+00:00"

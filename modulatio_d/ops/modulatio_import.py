"""`modulatio import modulatio` and `modulatio import modulatio-cron`: what of a Modulatio
vault is not read natively, brought over once (docs/migrating-from-modulatio.md).

Plans are read as they are (core/modulatio_shape.py): for them the import only reports,
per file, how they read or why one is refused; it never rewrites a plan.

`<vault>/cron-config.json` (`{"jobs": [...]}`) is converted: each job becomes a cron
entry `<project>/cron/<PROJECT>-C-<NNN>.md` with its schedule words kept (core/
schedule_words.py reads them), `timezone: UTC` (Modulatio evaluated them in UTC),
`overlap: allow` (Modulatio fired regardless), the job's id in `x-modulatio-job`. The
first due time is the job's `next_run`: a run it missed while no daemon ran fires once
(catch_up latest), nothing older. cron-config.json itself is left as it is.

Idempotent: a job whose id an entry already carries is reported `unchanged`; with
`dry_run` nothing is written and the report says what would be.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from modulatio_d.core import markdown, names
from modulatio_d.core.errors import BadFile
from modulatio_d.core.times import parse_time
from modulatio_d.store import fs
from modulatio_d.store.vault import Vault, create_numbered, next_number

CRON_CONFIG = "cron-config.json"
JOB_KEY = "x-modulatio-job"


@dataclass(frozen=True)
class Change:
    path: str
    """Relative to the vault."""
    action: str
    """create, unchanged, skip (cannot be imported), as-is (read natively), refused."""
    detail: str

    def as_dict(self) -> dict:
        return {"path": self.path, "action": self.action, "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.path}: {self.action}: {self.detail}"


def vault_notes(vault: Vault, now: datetime) -> list[tuple[Path, str, str, bool]]:
    """What `validate` says of a vault coming from Modulatio: (path, reason, hint, warning).

    Project folders differing only in case (`tst/` beside `TST/`: an error, commands given
    the code cannot tell them apart); cron-config.json jobs not imported (a warning: no
    daemon fires them)."""
    notes = []
    folders: dict[str, list[str]] = {}
    for name in vault.projects():
        folders.setdefault(name.lower(), []).append(name)
    for same in (f for f in folders.values() if len(f) > 1):
        notes.append((vault.root / same[0], f"the project folders {', '.join(same)} differ "
                      "only in case: commands given the code cannot tell them apart",
                      "merge them into one folder", False))
    waiting = [c for c in import_cron(vault, now, dry_run=True) if c.action != "unchanged"]
    if waiting:
        notes.append((vault.root / CRON_CONFIG, f"{len(waiting)} Modulatio cron job(s) not "
                      "imported: no daemon fires them", "run `modulatio import modulatio-cron "
                      "--dry-run`, then without --dry-run", True))
    return notes


def import_all(vault: Vault, now: datetime, dry_run: bool) -> list[Change]:
    return report_plans(vault) + import_cron(vault, now, dry_run)


def report_plans(vault: Vault) -> list[Change]:
    from modulatio_d.store.plan_file import read_plan  # not for `validate`'s vault_notes

    out = []
    for project in vault.projects():
        for entry in sorted(vault.files(project, "plans"), key=lambda e: e.name):
            path = Path(entry.path)
            rel = str(path.relative_to(vault.root))
            try:
                plan = read_plan(vault, path).plan
            except BadFile as e:
                out.append(Change(rel, "refused", f"{e} (fix it by hand; no import can)"))
                continue
            except OSError as e:
                out.append(Change(rel, "refused", f"cannot be read: {e.strerror}"))
                continue
            shape = plan.shape
            if shape is None:
                continue  # this project's own shape: nothing to say
            notes = [f"status {shape.status_word}"]
            if shape.items is not None and not shape.body_error:
                notes.append(f"{len(shape.items)} sub-objective(s) from the body")
            if shape.body_error:
                notes.append(f"fails closed: {shape.body_error} (a daemon pauses it with a "
                             "ticket)")
            if plan.budget.tokens or plan.budget.cost_usd or plan.budget.wall_clock:
                notes.append("caps honoured as its budget")
            out.append(Change(rel, "as-is", "read natively, no change: " + ", ".join(notes)))
    return out


def import_cron(vault: Vault, now: datetime, dry_run: bool) -> list[Change]:
    path = vault.root / CRON_CONFIG
    try:
        raw = fs.read(path, "config").raw
    except FileNotFoundError:
        return []
    try:
        jobs = json.loads(raw.decode("utf-8")).get("jobs", [])
        if not isinstance(jobs, list):
            raise ValueError("jobs is not a list")
    except (ValueError, AttributeError) as e:
        return [Change(CRON_CONFIG, "refused", f"not a cron-config.json of Modulatio: {e}")]
    from modulatio_d.core import cron  # croniter: only with a cron-config.json
    from modulatio_d.store import cron_entries

    done = _imported(vault)
    out = []
    for n, job in enumerate(jobs):
        where = f"{CRON_CONFIG} job {n + 1}"
        if not isinstance(job, dict):
            out.append(Change(where, "skip", "not a mapping"))
            continue
        job_id = str(job.get("id") or "")
        where = f"{CRON_CONFIG} job {job_id or n + 1}"
        if job_id and job_id in done:
            out.append(Change(done[job_id], "unchanged", f"job {job_id} already imported"))
            continue
        try:
            project, keys, body = _entry_of(vault, job, now)
        except ValueError as e:
            out.append(Change(where, "skip", str(e)))
            continue
        target = f"{project}/cron/{project.upper()}-C-NNN.md"
        detail = (f"job {job_id} ({job.get('name') or keys['objective']}): schedule "
                  f"{keys['schedule']!r} = {cron.parse_schedule(str(keys['schedule']))!r} UTC")
        if dry_run:
            out.append(Change(target, "create", detail + " (dry run: nothing written)"))
            continue
        def text_for(entry_id: str, keys: dict = keys, body: str = body) -> str:
            return cron_entries.entry_text({"id": entry_id, **keys}) + body

        prefix = f"{project.upper()}-C-"  # ids upper case, as Modulatio's TST-PLAN-001
        first = next_number(prefix, (vault.cron_dir(project), vault.plans_dir(project),
                                     vault.records_dir(project)))
        _, made = create_numbered(vault.cron_dir(project), prefix, 3, first, text_for)
        out.append(Change(str(made.relative_to(vault.root)), "create", detail))
    return out


def _entry_of(vault: Vault, job: dict, now: datetime) -> tuple[str, dict, str]:
    """(project folder, entry keys, body) of one job; ValueError when it cannot be."""
    code = job.get("project_code")
    if not isinstance(code, str) or not names.is_valid(code):
        raise ValueError(f"project_code {code!r} is not a project code")
    same = [f for f in vault.folders() if f.lower() == code.lower()]
    project = same[0] if len(same) == 1 else code.lower()  # Modulatio's folders are lower case
    if len(same) > 1:
        raise ValueError(f"project {code} matches the folders {', '.join(same)}: merge them")
    if job.get("jt_id"):
        raise ValueError(f"job template {job['jt_id']!r} jobs cannot be imported: make a "
                         "template plan and `modulatio cron add --template` it")
    objective = job.get("objective")
    if not isinstance(objective, str) or not objective.strip():
        raise ValueError("no objective")
    schedule = job.get("schedule")
    if not isinstance(schedule, str):
        raise ValueError("no schedule")
    from modulatio_d.core import cron

    cron.parse_schedule(schedule)  # ValueError names the form to use
    next_run = parse_time(job.get("next_run"))
    # Due times start just before next_run: the run Modulatio would make next is the first,
    # and one it missed while no daemon ran fires once (catch_up latest), nothing older.
    start = now if next_run is None else next_run - timedelta(seconds=1)
    keys: dict[str, object] = {
        "objective": objective.strip(), "schedule": schedule.strip(), "timezone": "UTC",
        "enabled": job.get("enabled") is not False, "catch_up": "latest",
        "overlap": "allow", "approve": True, "created_at": start.astimezone(UTC),
        JOB_KEY: str(job.get("id") or ""),
    }
    if job.get("name"):
        keys["x-modulatio-name"] = str(job["name"])
    body = str(job.get("description") or "").strip()
    return project, keys, (body + "\n") if body else ""


def _imported(vault: Vault) -> dict[str, str]:
    """Job id -> the entry (relative path) that carries it."""
    found = {}
    for project in vault.projects():
        for entry in vault.files(project, "cron"):
            path = Path(entry.path)
            try:
                data = markdown.load(path, vault.read(path, "cron entry")[1]).data
            except (BadFile, OSError):
                continue
            job = data.get(JOB_KEY)
            if isinstance(job, str) and job:
                found[job] = str(path.relative_to(vault.root))
    return found

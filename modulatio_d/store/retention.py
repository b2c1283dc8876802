"""Retention: finished plans archived (or removed), old rotated event logs removed.

Protocol (`modulatio prune`, and the daemons in the background when the config
has `retention: {older_than: ...}`):
1. One pruner at a time: it holds the flock of `.modulatio/retention.lock`
   (non-blocking; a daemon that finds it held skips this round).
2. Candidates, per project: plan files in `plans/` whose status (a cheap look,
   then a full parse) is `completed`, `failed` or `aborted` and whose file has
   not changed for `older_than` (its mtime: a finished plan is not written
   again). The `keep_last` most recently changed finished plans of each
   project stay whatever their age. Cron kickoff plans are plans like others:
   their four files (plan, lock, usage, runs) are folded into the archive.
3. Each candidate is handled under its own plan lock (skipped when held): its
   run logs `<id>.runs/`, usage `<id>.usage.jsonl`, older reflection entries
   `<id>.reflection_log.jsonl` and the daemon's record
   (`.modulatio/state/<P>/<id>.json`, as `<id>.state.json`) move first, the
   plan file last, to `<PROJECT>/archive/<YYYY>/<MM>/` (the year and month of
   its mtime, UTC); then its lock file is removed. With `archive: false` (or
   `prune --remove`) they are deleted instead. A crash half way leaves the plan
   in plans/ with part of its files archived: the next round finishes it.
4. Rotated event logs (`events-*.jsonl`, store/events.py) rotated more than
   `older_than` ago are removed; the live events.jsonl never is.
Plan ids are never given out again: `plan new` counts the archive's ids too
(ops/plans.next_plan_number). Tickets stay in `tickets/`.
"""

from __future__ import annotations

import logging
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from modulatio_d.core import peek
from modulatio_d.core.errors import BadFile
from modulatio_d.core.plan import FINAL
from modulatio_d.store import events as events_mod
from modulatio_d.store import fs, reflections, usage
from modulatio_d.store.lock import FileLock, lock_path
from modulatio_d.store.plan_file import read_plan
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.retention")
PRUNE_EVERY_S = 3600.0
"""How often a daemon prunes, when the config asks it to."""
_FINAL = {s.value for s in FINAL}


@dataclass
class Report:
    archived: list[str] = field(default_factory=list)  # plan ids (or removed, see `removed`)
    removed: bool = False
    events_removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "id: why"
    busy: bool = False  # another pruner held the lock


def archive_dir(vault: Vault, project: str, at: datetime) -> Path:
    return vault.project_dir(project) / "archive" / f"{at.year:04d}" / f"{at.month:02d}"


def archive_folders(vault: Vault, project: str) -> list[Path]:
    """Every `<YYYY>/<MM>` folder of the project's archive."""
    top = vault.project_dir(project) / "archive"
    out = []
    for year in fs.entries(top):
        if year.is_dir():
            out += [Path(m.path) for m in fs.entries(year.path) if m.is_dir()]
    return out


def prune(vault: Vault, projects: Iterable[str], now: datetime, older_than: float,
          keep_last: int = 0, remove: bool = False, dry_run: bool = False,
          notify: Callable[..., None] | None = None) -> Report:
    """One round of the protocol above."""
    report = Report(removed=remove)
    lock = FileLock(vault.meta / "retention.lock")
    if not lock.try_acquire():
        report.busy = True
        return report
    with lock:
        limit = now.timestamp() - older_than
        for project in projects:
            for path, mtime in _candidates(vault, project, limit, keep_last):
                why = _one(vault, project, path, mtime, remove, dry_run)
                if why:
                    report.skipped.append(f"{path.stem}: {why}")
                    continue
                report.archived.append(path.stem)
                if notify and not dry_run:
                    notify("plan_removed" if remove else "plan_archived", project=project,
                           plan=path.stem)
        report.events_removed = _old_event_logs(vault, now - timedelta(seconds=older_than),
                                                dry_run)
    return report


def _candidates(vault: Vault, project: str, limit: float,
                keep_last: int) -> list[tuple[Path, float]]:
    finished = []
    for entry in fs.entries(vault.plans_dir(project), ".md"):
        if entry.name.startswith(".") or not stat.S_ISREG(entry.st.st_mode):
            continue
        path = Path(entry.path)
        try:
            status = peek.peek_status(vault.read(path)[1])
        except (BadFile, OSError):
            continue
        if status in _FINAL:
            finished.append((path, entry.st.st_mtime))
    finished.sort(key=lambda pm: pm[1], reverse=True)
    return [(p, m) for p, m in finished[keep_last:] if m < limit]


def _one(vault: Vault, project: str, path: Path, mtime: float, remove: bool,
         dry_run: bool) -> str | None:
    """Archive (or remove) one finished plan; why not, or None when done."""
    lock = FileLock(lock_path(path))
    if not lock.try_acquire():
        return "its lock is held"
    with lock:
        try:
            plan = read_plan(vault, path).plan  # parsed: the status for sure
        except (BadFile, OSError) as e:
            return f"cannot be read: {e}"
        if plan.status not in FINAL:
            return f"now {plan.status.value}"
        if dry_run:
            return None
        dest = archive_dir(vault, project, datetime.fromtimestamp(mtime, UTC))
        record = vault.record_path(project, path.stem)
        files = [(path.with_suffix(".runs"), dest / f"{path.stem}.runs"),
                 (usage.usage_path(path), dest / f"{path.stem}.usage.jsonl"),
                 (reflections.path_of(path), dest / reflections.path_of(path).name),
                 (record, dest / f"{path.stem}.state.json"),
                 (path, dest / path.name)]  # the plan file last: see the protocol
        for src, dst in files:
            if not fs.exists(src):
                continue
            if remove:
                _delete(src)
            else:
                try:
                    fs.move(src, dst)
                except FileExistsError:
                    return f"{dst} is there already: move it away"
        fs.unlink(lock_path(path), missing_ok=True)
    return None


def _delete(path: Path) -> None:
    st = fs.stat_of(path)
    if stat.S_ISDIR(st.st_mode):
        # rmtree walks by descriptors and never follows a link (its safe-fd variant)
        shutil.rmtree(path)
    else:
        fs.unlink(path)


def _old_event_logs(vault: Vault, before: datetime, dry_run: bool) -> list[str]:
    out = []
    for path in events_mod.files(vault.events_path)[:-1]:  # the live file stays
        at = events_mod.rotated_at(path.name)
        if at is not None and at < before:
            if not dry_run:
                fs.unlink(path, missing_ok=True)
            out.append(path.name)
    return out

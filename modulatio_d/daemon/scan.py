"""The scan: which plans can be claimed now, in the order to try them.

What was learned about each plan file is kept keyed by its stat signature
(inode, size, mtime, ctime), so an idle tick costs one stat per file. A file
seen for the first time or changed is read and its status found with a regex;
only `approved` and `executing` plans are parsed fully (milliseconds each), and
those whose status the regex cannot tell (`status: >-` on two lines) or does
not know.
An `executing` plan is claimable only when nobody holds its lock: an orphan
of a dead daemon.

Order: priority (higher first), then approved_at (a plan approved by hand
without one sorts by its file's mtime), then id.

Scheduling (core/schedule.py), judged at every look since it depends on the
clock and on other files: a plan is not offered before its `not_before` or its
pending `retry_wait.at` (the earliest such time is `next_due`, so the loop wakes
for it), nor while a plan it names in `after` is not `completed` (their
statuses are peeked, cached by stat signature). A plan past its `expires_at`
that never started is offered regardless: the runner fails it as `expired`.

A bad file is refused once per version: logged, recorded in events.jsonl,
left as written. So is a file or folder that fails the trust checks
(store/trust.py), judged on the stat the scan has anyway; a project whose
folder or plans/ fails them is skipped whole. A file changed in the last 2 s
that does not parse is not judged yet: an editor may be half way through
writing it.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from modulatio_d.core import names, peek, schedule
from modulatio_d.core.errors import BadFile
from modulatio_d.core.plan import CLAIMABLE, PlanStatus
from modulatio_d.store import fs, plan_file
from modulatio_d.store.atomic import signature
from modulatio_d.store.lock import is_held, lock_path
from modulatio_d.store.refusals import Refusals
from modulatio_d.store.trust import Checks
from modulatio_d.store.vault import SETTLE_S, Vault

log = logging.getLogger("modulatio.scan")
_STATUSES = {s.value for s in PlanStatus}


@dataclass(frozen=True, order=True)
class Candidate:
    sort_key: tuple
    path: Path
    project: str
    status: PlanStatus
    claimable_from: datetime | None = field(default=None, compare=False)
    after: tuple[str, ...] = field(default=(), compare=False)
    expires_at: datetime | None = field(default=None, compare=False)
    concurrency_key: str | None = field(default=None, compare=False)


# What the scan keeps per plan file (a big vault has 100,000): in a dict per project, keyed
# by the file's name, its stat signature packed into one int, or (that int, Candidate) for
# a plan that can be claimed. No Path and no object of our own per file: about 200 bytes a
# file, none of it tracked by the cyclic GC (a full collection, which a parse can trigger
# on the pickup path, would otherwise walk every file the vault holds).
_Kept = int | tuple[int, Candidate]
_UNKEPT = object()  # _look: not remembered, looked at again next time
_M64 = (1 << 64) - 1


def _packed(st: os.stat_result) -> int:
    """The stat signature (atomic.signature: inode, size, mtime, ctime) as one int."""
    return _pack(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _pack(ino: int, size: int, mtime_ns: int, ctime_ns: int) -> int:
    return (ino & _M64) << 192 | (size & _M64) << 128 | (mtime_ns & _M64) << 64 \
        | ctime_ns & _M64


class Scanner:
    def __init__(self, vault: Vault, projects: list[str] | None, events: Callable[..., None],
                 monotonic: Callable[[], float] = time.monotonic, trust: Checks | None = None):
        self.vault = vault
        self.projects = projects
        self.monotonic = monotonic
        self.trust = trust
        self._generation = trust.generation if trust else 0
        self._untrusted: set[str] = set()  # projects whose folders were refused at the last scan
        self._seen: dict[str, dict[str, _Kept]] = {}  # project -> file name -> _Kept
        self.refusals = Refusals(vault, events, "plan")
        self._held_off: dict[Path, float] = {}  # path -> monotonic time to try again
        self._statuses: dict[str, tuple[tuple, str | None]] = {}  # dependency -> (sig, status)
        self.next_due: datetime | None = None  # the earliest not_before or retry_wait.at to come
        # Plans waiting for another (`after`), as of the last look: looked at again alone
        # when a plan ends (daemon/candidates.py), since their own files do not change.
        self.waiting: set[str] = set()
        self.wake_hint: float | None = None  # seconds until a watch trigger wants a look

    def hold_off(self, path: Path, seconds: float) -> None:
        """Do not offer `path` for `seconds` (its file could not be written)."""
        self._held_off[path] = self.monotonic() + seconds

    def served(self) -> list[str]:
        return self.projects if self.projects else self.vault.projects()

    def _trusted_folders(self, project: str) -> bool:
        if self.trust is None:
            return True
        ok = self.trust.folder_ok(self.vault.project_dir(project), project) and \
            self.trust.folder_ok(self.vault.plans_dir(project), project)
        (self._untrusted.discard if ok else self._untrusted.add)(project)
        return ok

    def scan(self, now: datetime) -> list[Candidate]:
        if self.trust is not None and self.trust.generation != self._generation:
            self._generation = self.trust.generation
            self._seen.clear()  # judged under another policy: judge every file again
        found: list[Candidate] = []
        scanned = set()
        self.next_due = None
        self.waiting = set()
        for project in self.served():
            folder = str(self.vault.plans_dir(project))
            try:
                self.vault.check_folder(folder)
            except BadFile as e:  # looked at every tick: told once per message
                self.refusals.tell(folder, project, e, str(e))
                continue
            if not self._trusted_folders(project):
                continue
            scanned.add(project)
            files = self._seen.setdefault(project, {})
            present = 0  # names listed that are kept: fewer than kept, some went away
            try:
                fd = fs.open_folder(folder)  # each file is opened by its name in it
            except OSError:
                fd = None  # each_file finds nothing either
            try:
                # Names not kept (at a first scan, all of them) come unstat'ed: opened by
                # name in `fd` and judged on their fstat. No `fd`: each one lstat'ed.
                for name, st in self.vault.each_file(project, "plans", fd,
                                                     None if fd is None else files):
                    if st is None:
                        c = self._first_look(files, folder, name, project, now, fd)
                    else:
                        c = self._candidate(files, folder, name, project, st, now, fd)
                    if c is not None:
                        found.append(c)
                    present += name in files
            finally:
                if fd is not None:
                    fs.close(fd)
            if present != len(files):
                self._forget_gone(folder, files)
        for project in self._seen.keys() - scanned:  # no longer served, or refused
            self._forget_gone(str(self.vault.plans_dir(project)), self._seen.pop(project), ())
        return sorted(found)

    def _forget_gone(self, folder: str, files: dict[str, _Kept],
                     listed: Iterable[str] | None = None) -> None:
        """Forget the kept files of `folder` not `listed` (None: list it now)."""
        try:
            there = set(fs.names(folder) if listed is None else listed)
        except OSError:
            return  # cannot list it now: forget nothing, the next scan sees
        for name in files.keys() - there:
            del files[name]
            self.refusals.clear(os.path.join(folder, name))

    def wrote(self, path: Path, sig: tuple[int, int, int, int], status: PlanStatus) -> None:
        """A plan this daemon ran ended with a write of signature `sig` (inode, size,
        mtime_ns, ctime_ns; atomic.rewrite's, of its own inode), leaving it `status`: the
        look that follows the run (inotify saw the writes) reads nothing while the file
        is still that one. Only for a status no claim takes: a plan left claimable is
        read again, as it would be."""
        files = self._seen.get(path.parent.parent.name)
        if files is not None and status not in CLAIMABLE:
            files[path.name] = _pack(*sig)

    def look_at(self, paths: set[str], now: datetime) -> list[Candidate]:
        """The claimable plans among `paths` (files inotify saw change), in order.

        An idle daemon has already tried every other plan at its last scan, so a
        plan a person just approved can be claimed from this look alone, without
        stat()ing the whole vault first: pickup stays fast however big the vault.
        """
        found = []
        for path in list(paths):  # it may be self.waiting, which a look changes
            if not path.endswith(".md"):
                continue  # most changes a plan's run makes: its lock, usage, logs, temp files
            p = Path(path)
            project = p.parent.parent.name
            if p.suffix != ".md" or p.parent.name != "plans" or \
                    p.parent.parent.parent != self.vault.root or project in self._untrusted \
                    or not (project in self.projects if self.projects
                            else names.is_valid(project)):
                continue
            try:
                # Found beneath the root with no link on the way, the file makes its folder
                # a project (vault.projects(): a valid name holding plans/): no listing of
                # the vault per look (a look follows every plan that ends).
                st = fs.stat_of(path)
            except OSError:
                continue  # gone, or in a linked folder (the scan tells that once)
            c = self._candidate(self._seen.setdefault(project, {}), str(p.parent), p.name,
                                project, st, now)
            if c is not None:
                found.append(c)
        return sorted(found)

    def _first_look(self, files: dict[str, _Kept], folder: str, name: str, project: str,
                    now: datetime, folder_fd: int) -> Candidate | None:
        """`_candidate` for a file not kept (all of them at a first scan): opened by its
        name, judged on the fstat of what was opened (trust, then the read's checks), with
        no lstat before it (at 100,000 plans, 100,000 system calls less). What the open
        refuses (a link, a socket, no permission) is looked at by its lstat, as a kept
        file is: the same checks, in the same order, tell the same refusals."""
        path = folder + os.sep + name  # a listed name in an absolute folder: os.path.join's
        try:                            # checks cost more than the rest of this function
            opened = fs.open_at(folder_fd, path, name)
            if opened is None:
                st = fs.lstat_at(folder_fd, name)
        except FileNotFoundError:
            return None  # renamed away since it was listed
        except OSError as e:  # ESTALE or EIO past the retries: never a bad file
            log.warning("cannot read %s now, looking again later: %s", path, e)
            return None
        if opened is None:
            return self._candidate(files, folder, name, project, st, now, folder_fd, path=path)
        fd, st = opened
        try:
            return self._candidate(files, folder, name, project, st, now, folder_fd, fd, path)
        finally:
            fs.close(fd)

    def _candidate(self, files: dict[str, _Kept], folder: str, name: str, project: str,
                   st: os.stat_result, now: datetime, folder_fd: int | None = None,
                   opened: int | None = None, path: str | None = None) -> Candidate | None:
        """The plan `name` of `folder` (opened as `folder_fd` if given) if it can be
        claimed now; what was learned is kept in `files` (the project's). `opened`: the
        file itself, opened by fs.open_at (`st` its fstat), read from there; `path`: the
        file's, when the caller has it."""
        packed = _packed(st)
        kept = files.get(name)
        if kept is None or (kept if type(kept) is int else kept[0]) != packed:
            c = self._look(path or os.path.join(folder, name), project, st, now, folder_fd,
                           opened)
            if c is _UNKEPT:
                return None
            files[name] = packed if c is None else (packed, c)
        elif type(kept) is int:
            return None
        else:
            c = kept[1]
        if c is None:
            return None
        if c.status is PlanStatus.EXECUTING and is_held(lock_path(c.path)):
            return None  # its daemon is alive and running it
        if self._held_off and self._held_off.get(c.path, 0) > self.monotonic():
            return None
        return c if self._due(c, now) else None

    def cap_wait(self, seconds: float, now: datetime) -> float:
        """`seconds`, or less when a plan becomes claimable sooner (next_due) or a watch
        trigger wants a look (wake_hint, daemon/kickoffs.py)."""
        if self.next_due is not None:
            seconds = min(seconds, (self.next_due - now).total_seconds() + 0.01)
        if self.wake_hint is not None:
            seconds, self.wake_hint = min(seconds, self.wake_hint), None
        return max(0.05, seconds)

    def _due(self, c: Candidate, now: datetime) -> bool:
        """The scheduling keys allow the plan now (see the module's docstring)."""
        if c.status is PlanStatus.EXECUTING:
            return True  # an orphan: it started, whatever its keys say
        if c.expires_at is not None and c.expires_at <= now:
            return True  # to be failed as expired
        if c.claimable_from is not None and c.claimable_from > now:
            if self.next_due is None or c.claimable_from < self.next_due:
                self.next_due = c.claimable_from
            return False
        if c.after:
            status_of = {d: self.status_of(c.project, d) for d in c.after}
            ready = schedule.waiting(c.after, status_of).ready
            (self.waiting.discard if ready else self.waiting.add)(str(c.path))
            return ready
        return True

    def status_of(self, project: str, plan_id: str) -> str | None:
        """The status of a plan (None: no such file), peeked and cached by stat signature."""
        path = str(self.vault.plan_path(project, plan_id))
        try:
            sig = signature(fs.stat_of(path))
            seen = self._statuses.get(path)
            if seen is None or seen[0] != sig:
                seen = (sig, peek.peek_status(self.vault.read(path)[1]) or "draft")
                self._statuses[path] = seen
            return seen[1]
        except FileNotFoundError:
            return None
        except (OSError, BadFile):
            return "unreadable"  # not completed: the dependent waits

    def _look(self, path: str, project: str, st: os.stat_result, now: datetime,
              folder_fd: int | None = None,
              opened: int | None = None) -> Candidate | None | object:
        """The plan at `path` as a Candidate, None if it cannot be claimed, _UNKEPT when
        it is to be looked at again next time (not remembered). `opened`: see _candidate."""
        mtime = st.st_mtime
        untrusted = self.trust.file_problem(path, st) if self.trust is not None else None
        if untrusted is not None:  # owner and mode are in the signature: told once each
            self.refusals.tell(path, project, untrusted, (signature(st), self._generation))
            return None
        try:
            if opened is not None:
                text = self.vault.read_opened(path, opened, st, "plan", folder_fd)
            else:
                _, text = self.vault.read(path, "plan", folder_fd)
            status = peek.peek_status(text)
            if status is None or status in _STATUSES and status not in ("approved",
                                                                        "executing"):
                self.refusals.clear(path)  # no status line: a draft
                return None
            if status == "executing" and is_held(lock_path(Path(path))):
                # Its daemon runs it: not claimable, and not parsed (each write of a
                # running plan wakes every other daemon: N daemons would parse each
                # other's plans after every step). Not remembered: looked at again,
                # so that it is claimed once its holder is gone.
                return _UNKEPT
            # approved or executing; else a status the regex cannot tell (a block
            # scalar, a quoted key) or an unknown one: the parse says, or refuses.
            plan = plan_file.parse(Path(path), text, remember=True)  # the claim's, too
        except FileNotFoundError:
            return _UNKEPT
        except BadFile as e:
            if now.timestamp() - mtime < SETTLE_S:
                return _UNKEPT  # maybe half-written: look again next time, judge nothing yet
            self.refusals.tell(path, project, e, signature(st))
            return None
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):  # a person's to fix: told once
                self.refusals.tell(path, project, BadFile(path, f"cannot be read: {e}"),
                                   str(e))
            else:  # ESTALE or EIO past the retries (store/atomic.py): never a bad file
                log.warning("cannot read %s now, looking again later: %s", path, e)
            return _UNKEPT
        except Exception as e:  # noqa: BLE001 (a reader's bug costs this file, not the scan)
            log.error("reading %s raised %s: %s", path, type(e).__name__, e, exc_info=e)
            self.refusals.tell(path, project, BadFile(
                path, f"could not be read ({type(e).__name__}: {e}); please report it"),
                signature(st))
            return None
        self.refusals.clear(path)
        if plan.status not in CLAIMABLE:
            return None
        when = plan.approved_at or datetime.fromtimestamp(mtime, UTC)
        key = (-plan.priority, when.timestamp(), plan.id)
        return Candidate(key, Path(path), project, plan.status, schedule.claimable_from(plan),
                         plan.schedule.after, None if plan.reflection_log or plan.in_flight
                         else plan.schedule.expires_at, plan.schedule.concurrency_key)

"""Slots: named flock'd files in the vault, held for a whole run, that count or exclude.

Protocol (the same as a plan's lock, store/lock.py, applied to a numbered set):

- A limit of N is N slot files `<folder>/<i>.lock`, i = 0..N-1, under
  `.modulatio/slots/`: `vault/` for the vault's capacity, `projects/<P>/` for a
  project's (core/capacity.py decides which numbers a plan may try). A slot
  file is created on first use and never deleted or replaced, so every holder
  locks the same inode.
- Taking a slot is flock(LOCK_EX | LOCK_NB) on one of its files, tried in the
  given order; the first free one is held. Never a blocking flock: a busy set
  is "wait", answered at once, and the caller tries again later.
- `take_all(groups)` takes one slot of each group, in the order given (the
  project's before the vault's), or none: a group with no free slot releases
  what was taken and answers which group was full. Nothing waits while holding,
  so two takers can never deadlock.
- A limit lowered while more run: a slot file numbered at or above the new
  limit that is still held counts against it; the group is full until it is
  free (`take_all` checks after taking: exact, never over).
- The holder notes who it is in the slot file (host, pid, plan, since), for
  `status` only: the flock, not the text, is what excludes.
- The slot is held for the whole run, like the plan's lock, and its descriptor
  is passed to each step's child (daemon/runner.py), so it stays held while a
  child of a dead daemon runs on; the kernel frees it when the last descriptor
  closes: a daemon that dies frees its slots with no cleanup.
- Releasing opens and closes `.modulatio/slots/freed` for writing (a file event
  the daemons' watch on `.modulatio/slots/` sees), because a freed flock makes
  no file event, and waiters on this host should not wait a tick. Waiters of
  other hosts retry every second or so while they wait (daemon/admission.py).
- A slot file deleted while held lets another taker create a new inode and take
  "the same" slot: one run over the limit. So a holder checks `still_ours()`
  at every step boundary and beat exactly as for the plan's lock, and lets the
  plan go when a slot is lost (no new step; daemon/runner.py `lock_lost`).

`probe(folder)` (for `status` and `drain`) tries each slot file without
waiting: a slot found free is released at once. It can make a taker at that
instant see the slot busy: the taker waits its short retry, never more.

Other exclusive resources (a `concurrency_key:` of plans, say) use the same
calls with their own folder and a group of one slot.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from modulatio_d.store import fs
from modulatio_d.store.lock import FileLock

log = logging.getLogger("modulatio.slots")
FOLDER = "slots"
FREED = "freed"  # closed after writing when a slot is released: the wake-up


def root(meta: Path) -> Path:
    """`.modulatio/slots/`, the folder of every slot group."""
    return meta / FOLDER


def vault_group(meta: Path) -> Path:
    return root(meta) / "vault"


def project_group(meta: Path, project: str) -> Path:
    return root(meta) / "projects" / project


def key_group(meta: Path, key: str) -> Path:
    """The one slot of a plans' `concurrency_key:` (a hash names it: any text may be a key)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return root(meta) / "keys" / digest


@dataclass(frozen=True)
class Group:
    """One limit: its folder, the slot numbers to try in order, and the limit itself
    (slot files numbered at or above it are leftovers of a higher limit)."""

    folder: Path
    numbers: tuple[int, ...]
    limit: int
    name: str  # for people: "vault", "project SALES", "concurrency key db"


def slot_path(folder: Path, number: int) -> Path:
    return folder / f"{number}.lock"


@dataclass
class Held:
    """The slots one run holds; released together."""

    locks: list[FileLock]

    @property
    def fds(self) -> tuple[int, ...]:
        return tuple(lock.fd for lock in self.locks if lock.fd is not None)

    def lost(self) -> tuple[Path, str] | None:
        """The first slot whose file was deleted or replaced under us, and how."""
        for lock in self.locks:
            how = lock.still_ours()
            if how is not None and how != "released":
                return lock.path, how
        return None

    def release(self) -> None:
        """Release every slot, then wake the waiters of this host (see the protocol)."""
        tops = {_top(lock.path) for lock in self.locks}
        self.release_quietly()
        for top in tops:
            wake_waiters(top)

    def release_quietly(self) -> None:
        """Release without a wake-up: nothing ran, nobody waits on these."""
        for lock in self.locks:
            lock.release()
        self.locks = []


def _top(path: Path) -> Path | None:
    """The `.modulatio/slots/` folder above a slot file."""
    for parent in path.parents:
        if parent.name == FOLDER:
            return parent
    return None


def wake_waiters(top: Path | None) -> None:
    """Close a file opened for writing in `.modulatio/slots/` (FREED): an inotify event
    for every daemon of this host watching that folder. Failing costs them a tick."""
    if top is None:
        return
    try:
        fs.close(fs.open_regular(top / FREED, os.O_WRONLY | os.O_CREAT))
    except OSError as e:
        log.debug("cannot wake slot waiters: %s", e)


def take_all(groups: Iterable[Group], **holder: object) -> Held | Group:
    """One slot of each group, or none (the first group found full is answered)."""
    held = Held([])
    for group in groups:
        lock = _take(group)
        if lock is None or _over_limit(group):
            if lock is not None:
                lock.release()
            held.release_quietly()
            return group
        try:
            lock.note_holder(**holder, slot=lock.path.stem, group=group.name)
        except OSError as e:  # for people only: the flock is held all the same
            log.warning("cannot note the holder in %s: %s", lock.path, e)
        held.locks.append(lock)
    return held


def _take(group: Group) -> FileLock | None:
    for number in group.numbers:
        lock = FileLock(slot_path(group.folder, number))
        try:
            fs.mkdirs(group.folder)
        except FileExistsError:
            pass
        if lock.try_acquire():  # BadFile for a link or folder in its place: the caller's
            return lock
    return None


def _numbers_on_disk(folder: Path) -> list[int]:
    try:
        names = fs.names(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        stem, dot, ext = name.partition(".")
        if dot and ext == "lock" and stem.isdigit():
            found.append(int(stem))
    return sorted(found)


def _over_limit(group: Group) -> bool:
    """Whether a slot file at or above the limit (a leftover of a higher one) is held."""
    for number in _numbers_on_disk(group.folder):
        if number >= group.limit and _busy(slot_path(group.folder, number)):
            return True
    return False


def _busy(path: Path) -> bool:
    probe = FileLock(path)
    try:
        if probe.try_acquire():
            probe.release()
            return False
    except Exception:  # noqa: BLE001 (an unusable file holds nothing)
        return False
    return True


def probe(folder: Path) -> list[dict]:
    """Each slot file of a group that is held now, with what its holder noted."""
    held = []
    for number in _numbers_on_disk(folder):
        path = slot_path(folder, number)
        if _busy(path):
            try:
                noted = json.loads(fs.read(path, "lock file").raw or b"{}")
            except (OSError, ValueError):
                noted = {}
            held.append({"slot": number, **(noted if isinstance(noted, dict) else {})})
    return held

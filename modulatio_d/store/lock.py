"""Claiming a plan or cron entry: flock on its sidecar `.lock` file.

The lock file sits beside the file it guards (`<id>.lock` next to `<id>.md`)
and is never deleted or replaced, so every claimer locks the same inode; the
guarded file itself is never locked, because a rename (ours or an editor's)
swaps its inode. flock belongs to the open file description: a second open()
in the same process contends like another process would. The descriptor is
close-on-exec; a step's child gets it explicitly (pass_fds) so that the plan
stays locked until the child's whole tree has exited, even if the daemon died.
The holder writes who it is into the lock file, for people and `status` only:
the flock, not the text, is what excludes.
The docs say never to delete a lock file, but a person or a sync tool will: the
next claimer then creates a new inode and locks it while the old holder still
believes it owns the plan. So a holder checks `still_ours()` (the inode of its
descriptor against the path's, fstat vs lstat) at every step boundary and beat,
and lets the plan go when it is not (daemon/runner.py). Waiting for a lock is always a
non-blocking flock tried again until a deadline (`flock_until`): a blocking
flock could not be interrupted by the caller's clock or a stop request.

Freshness on a shared filesystem: a host's client may serve a file's older
version for about a second after another host replaced it, even to the
process that has just taken the lock. So a holder that wrote the plan notes
the plan's last `rev` (and its claim `token`) in the lock file, fsynced,
before it releases the lock; the next holder reads that note past every cache
(`noted`) and reads the plan again until its rev is at least that
(daemon/claim.py). Past every cache means a new descriptor of the same file (by
/proc/self/fd: no path is walked) opened with O_DIRECT: on the GlusterFS test bed
a read through the held descriptor with the page cache dropped returned the note
from before the last holder's release in 13 of 27 takes of the lock, a new
open() in 24 of 27, an O_DIRECT one in none (the client's own caches skip O_DIRECT
descriptors). Where O_DIRECT is refused (tmpfs: EINVAL) the held descriptor is
read with the page cache dropped. On a local disk (the claimer knows: daemon/claim.py
`shared`) the note is read through the held descriptor: every process there shares
one page cache, and an uncached read per claim would buy nothing.
"""

from __future__ import annotations

import errno
import fcntl
import json
import mmap
import os
import time
from collections.abc import Callable
from pathlib import Path

from modulatio_d.core.errors import BadFile, FileUnusable
from modulatio_d.store import fs


def lock_path(path: Path) -> Path:
    return path.with_suffix(".lock")


def flock_until(fd: int, deadline: float, *, clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep, poll_s: float = 0.01) -> bool:
    """flock(LOCK_EX) `fd`, trying again every `poll_s` until `clock()` passes `deadline`;
    False when another holder still has it then. Tried once at least."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if clock() > deadline:
                return False
            sleep(poll_s)


NOTE_MAX = 65536  # a lock file's note is a line of JSON: far less


def _read_direct(fd: int) -> bytes | None:
    """The file of `fd`, read through a new O_DIRECT descriptor of it (an aligned
    buffer, as O_DIRECT needs); None when the filesystem refuses O_DIRECT."""
    try:
        direct = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with mmap.mmap(-1, NOTE_MAX) as buf:
            return bytes(buf[:os.preadv(direct, [buf], 0)])
    except OSError:
        return None
    finally:
        fs.close(direct)


class FileLock:
    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock without waiting; False when another holder has it."""
        return self.acquire(float("-inf"))

    def acquire(self, deadline: float, clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> bool:
        """Take the lock, waiting until `deadline` (on `clock`); False when still busy."""
        try:
            fd = fs.open_regular(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as e:
            # A link or a folder in its place is the vault's fault; anything else
            # (EACCES, EROFS, ENOSPC) is the system's: exit 3, not 1.
            kind = BadFile if isinstance(e, fs.Refused) or e.errno in (errno.ELOOP, errno.EISDIR) \
                else FileUnusable
            raise kind(self.path, f"cannot open the lock file: {e.strerror}", None,
                       "it must be a plain file (not a link) the daemon can write") from None
        if not flock_until(fd, deadline, clock=clock, sleep=sleep):
            fs.close(fd)
            return False
        self.fd = fd
        return True

    def note_holder(self, sync: bool = False, **holder: object) -> None:
        assert self.fd is not None
        data = (json.dumps(holder, sort_keys=True, default=str) + "\n").encode()
        # Written over the old note, then cut to its length: never truncated to 0 first.
        # On ext4 a file truncated to 0 and written again has its data flushed at close
        # (auto_da_alloc): the release's close started a write to the disk every plan,
        # 0.4-0.5 ms there. A reader that comes in between reads the new note with the
        # old one's tail, or an empty file before: neither parses, both are "no note".
        os.ftruncate(self.fd, fs.pwrite_all(self.fd, data, 0))
        if sync:
            os.fsync(self.fd)

    def noted(self, fresh: bool = True) -> dict:
        """What the last holder noted, read past every cache (see above: another host
        may have written it); {} when unreadable. `fresh` False: read through the held
        descriptor, for a caller that knows the vault is on a local disk, whose page
        cache every process shares (no uncached read per claim there)."""
        assert self.fd is not None
        raw = _read_direct(self.fd) if fresh else None
        if raw is None:
            if fresh:  # O_DIRECT refused (tmpfs): the page cache dropped instead
                try:
                    os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
                except OSError:
                    pass  # no cache to drop, or not supported: read what there is
            try:
                raw = os.pread(self.fd, NOTE_MAX, 0)
            except OSError:
                return {}
        try:
            found = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def still_ours(self) -> str | None:
        """None while the path still names the file we locked; else what happened to it
        ("deleted" or "replaced"). An error other than a missing file says nothing."""
        if self.fd is None:
            return "released"
        try:
            there = os.lstat(self.path)
        except FileNotFoundError:
            # A network client may say so for a while of a file that is there (GlusterFS,
            # for seconds): deleted only when its folder no longer lists it either.
            try:
                listed = self.path.name in os.listdir(self.path.parent)
            except OSError:
                listed = True  # the same client's trouble: cannot tell
            return None if listed else "deleted"
        except OSError:
            return None  # cannot tell (EIO, EACCES): not a reason to stop a step
        try:
            mine = os.fstat(self.fd)
        except OSError:
            return None  # a network mount reconnecting (EBADFD, ENOTCONN): cannot tell
        if (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
            return "replaced"
        return None

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            fs.close(fd)  # closing our last descriptor drops the flock

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_held(path: Path) -> bool:
    """Whether someone (another process, or another descriptor here) holds the lock."""
    if not fs.exists(path):
        return False
    probe = FileLock(path)
    if probe.try_acquire():
        probe.release()
        return False
    return True


def holder(path: Path) -> dict:
    """What the last holder wrote about itself ({} when nothing readable)."""
    try:
        return json.loads(fs.read(path, "lock file").raw or b"{}")
    except (OSError, ValueError):
        return {}

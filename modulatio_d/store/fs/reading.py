"""Reading vault files: whole within a limit, line by line, a tail, stat and listings."""

from __future__ import annotations

import errno
import mmap
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from modulatio_d.store.fs.opening import (
    LIMITS,
    OPEN,
    MiB,
    check_regular,
    open_beneath,
    open_folder,
    too_big,
)

CHUNK = 64 * 1024
T = TypeVar("T")

@dataclass(frozen=True)
class Snapshot:
    """A file's bytes as read, with what identifies that version on disk."""

    path: Path | str
    raw: bytes
    signature: tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns


def signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_upto(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        chunk = os.read(fd, min(left, 1 * MiB))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# A read racing a rename made by another host fails now and then on a shared filesystem:
# ESTALE (GlusterFS: 4-6 times in 40-48 thousand reads), or EIO from a FUSE client. Such a
# read is tried again a few times, briefly; if it still fails, the OSError goes up as an
# error of the system (looked at again later), never as a bad file.
TRANSIENT_ERRNOS = (errno.ESTALE, errno.EIO)
READ_RETRIES = 5
READ_RETRY_S = 0.02  # times the attempt number: 0.3 s in all


def retrying(read_once: Callable[[], T]) -> T:
    """`read_once()`, tried again after a transient error (see above)."""
    for attempt in range(READ_RETRIES + 1):
        try:
            return read_once()
        except OSError as e:
            if e.errno not in TRANSIENT_ERRNOS or attempt == READ_RETRIES:
                raise
            time.sleep(READ_RETRY_S * (attempt + 1))
    raise AssertionError("unreachable")


def read(path: Path | str, kind: str, folder_fd: int | None = None,
         direct: bool = False) -> Snapshot:
    """The whole file (a regular file within LIMITS[kind]); Refused or FileNotFoundError.
    ESTALE and EIO are tried again (`retrying`). `folder_fd`: a descriptor of the
    file's folder, opened beneath the root (the scan's): the file is opened by its
    name in it, O_NOFOLLOW, which is what a walk from the root would end with, without
    that walk (a first scan opens 100,000 files); any error but a missing file is
    answered by the walk, which explains it. `direct`: through an O_DIRECT
    descriptor, past the caches of a network filesystem's client (another host's
    write; where O_DIRECT is refused, a plain read)."""
    return retrying(lambda: _read_once(path, kind, folder_fd, direct))


def open_in(folder_fd: int | None, path: Path | str, flags: int) -> int:
    """`path` opened by its name in `folder_fd` (its folder, see `read`), else from the
    root (open_beneath), which also explains whatever the first open refused."""
    if folder_fd is not None:
        try:
            return os.open(os.path.basename(path), flags | OPEN, dir_fd=folder_fd)
        except FileNotFoundError:
            raise
        except OSError:
            pass  # a link, a folder, an EIO...: the walk says what it is, or reads it
    return open_beneath(path, flags)


def _open_direct(folder_fd: int | None, path: Path | str) -> int | None:
    try:
        return open_in(folder_fd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_DIRECT)
    except OSError as e:
        if e.errno == errno.EINVAL:
            return None  # no O_DIRECT on this filesystem
        raise


def _read_direct_upto(fd: int, n: int) -> bytes:
    """Up to `n` bytes through an O_DIRECT descriptor: whole aligned chunks into an
    aligned buffer until a short one (the end)."""
    chunks, left = [], n
    with mmap.mmap(-1, 1 * MiB) as buf:
        while left > 0:
            got = os.preadv(fd, [buf], n - left)
            chunks.append(bytes(buf[:min(got, left)]))
            left -= got
            if got < len(buf):
                break
    return b"".join(chunks)


def _read_once(path: Path | str, kind: str, folder_fd: int | None = None,
               direct: bool = False) -> Snapshot:
    fd = _open_direct(folder_fd, path) if direct else None
    direct = fd is not None
    if fd is None:
        fd = open_in(folder_fd, path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        check_regular(path, st)
        limit = LIMITS[kind]
        if st.st_size > limit:
            raise too_big(path, kind, st.st_size)
        raw = _read_direct_upto(fd, limit + 1) if direct else _read_upto(fd, limit + 1)
        if len(raw) > limit:
            raise too_big(path, kind)
        return Snapshot(path, raw, signature(st))
    finally:
        os.close(fd)


def lines(path: Path | str, kind: str, start: int = 0) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line without its newline) of a log from byte `start` on (lines
    counted from there), up to its size when opened; a line over LIMITS[kind] comes as
    None, unread. FileNotFoundError, Refused."""
    cap = LIMITS[kind]
    fd = open_beneath(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        check_regular(path, st)
        if start:
            os.lseek(fd, start, os.SEEK_SET)
        left, n, buf, skipping = st.st_size - start, 0, b"", False
        while left > 0:
            chunk = os.read(fd, min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                n += 1
                yield n, (None if skipping or nl > cap else buf[:nl])
                buf, skipping = buf[nl + 1:], False
            if len(buf) > cap:  # a line too long: drop what is read of it, skip to its end
                buf, skipping = b"", True
        if buf or skipping:
            n += 1
            yield n, None if skipping else buf
    finally:
        os.close(fd)


def tail(path: Path | str, limit: int, start: int = 0) -> bytes:
    """At most the last `limit` bytes of a regular file, from `start` on."""
    fd = open_beneath(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        check_regular(path, st)
        os.lseek(fd, max(start, st.st_size - limit), os.SEEK_SET)
        return _read_upto(fd, limit)
    finally:
        os.close(fd)


def stat_of(path: Path | str, folder_fd: int | None = None) -> os.stat_result:
    """lstat beneath the root: what is at `path` itself (a link is not followed).
    `folder_fd`: its folder, opened beneath the root (see `read`): `path` is looked at by
    its name there; a link (or nothing) found there is asked of the walk, which says so."""
    if folder_fd is not None:
        try:
            st = os.stat(os.path.basename(path), dir_fd=folder_fd, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                return st
        except OSError:
            pass  # missing, or an error the walk below raises with its explanation
    fd = open_beneath(path, os.O_PATH)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def exists(path: Path | str) -> bool:
    """Whether anything (a link too) is at `path`; Refused when a folder on the way is a link."""
    try:
        stat_of(path)
        return True
    except FileNotFoundError:
        return False


@dataclass(frozen=True)
class Entry:
    """A name in a folder listing, with what was at it when listed (lstat)."""

    name: str
    path: str
    st: os.stat_result

    def stat(self) -> os.stat_result:
        return self.st

    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.st.st_mode)

    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


def entries(folder: Path | str, suffix: str = "") -> list[Entry]:
    """The names ending in `suffix` in a folder (none when it is missing), with their lstat."""
    base = os.fspath(folder)
    return [Entry(name, os.path.join(base, name), st) for name, st in each_entry(folder, suffix)]


def each_entry(folder: Path | str, suffix: str = "",
               fd: int | None = None) -> Iterator[tuple[str, os.stat_result]]:
    """entries() one at a time, as (name, lstat): the daemon's scan of a folder of
    100,000 plans never holds them all in a list (its memory stays what it keeps).
    `fd`: the folder already opened (open_folder) by the caller, who closes it."""
    own = fd is None
    if own:
        try:
            fd = open_folder(folder)
        except FileNotFoundError:
            return
    try:
        with os.scandir(fd) as it:
            for e in it:
                if not e.name.endswith(suffix):
                    continue
                try:
                    st = os.stat(e.name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # renamed away since it was listed
                yield e.name, st
    finally:
        if own:
            os.close(fd)


def names(folder: Path | str) -> list[str]:
    """The names in a folder ([] when it is missing)."""
    try:
        fd = open_folder(folder)
    except FileNotFoundError:
        return []
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)



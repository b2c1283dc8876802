"""Reading vault files: whole within a limit, line by line, a tail, stat and listings."""

from __future__ import annotations

import errno
import mmap
import os
import stat
import time
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple, TypeVar

from modulatio_d.store.fs.closing import close
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


signature = attrgetter("st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")
"""A stat result's (inode, size, mtime_ns, ctime_ns): what says a file changed (made in C:
the commands' row cache asks it once a file, store/rowcache.py)."""


def _read_upto(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        chunk = os.read(fd, min(left, 1 * MiB))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_sized(fd: int, size: int, limit: int) -> bytes:
    """Up to `limit` + 1 bytes of a regular file whose fstat said `size` (<= limit): one
    read() of size + 1 bytes, which returns exactly `size` when the file still holds what
    fstat said; a short read or one more byte (it grew) goes on to the end, or to
    limit + 1 (no EOF read, no 1 MiB buffer for a 600-byte plan)."""
    first = os.read(fd, size + 1)
    if len(first) == size:
        return first
    return first + _read_upto(fd, limit + 1 - len(first))


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


def open_in(folder_fd: int | None, path: Path | str, flags: int, walk: bool = True,
            name: str | None = None) -> int:
    """`path` opened by its name (`name` if given) in `folder_fd` (its folder, see `read`),
    else from the root (open_beneath), which also explains whatever the first open
    refused (not `walk`: the first open's error is raised as it is)."""
    if folder_fd is not None:
        try:
            return os.open(name or os.path.basename(path), flags | OPEN, dir_fd=folder_fd)
        except FileNotFoundError:
            raise
        except OSError:
            if not walk:
                raise
            # a link, a folder, an EIO...: the walk says what it is, or reads it
    return open_beneath(path, flags)


def open_at(folder_fd: int, path: str, name: str) -> tuple[int, os.stat_result] | None:
    """`path` opened for reading by its `name` in `folder_fd` (its folder, see `read`:
    O_NOFOLLOW, O_NONBLOCK), with its fstat: how a first scan reads a file, judged on
    the stat of what it opened, with no lstat before (100,000 system calls less at a
    big vault's first scan). The caller closes the descriptor after `read_opened`.
    None when the open is refused (a link, a socket, no permission...): the caller
    then looks at the file's lstat, then `read`s it, whose walk explains the refusal.
    FileNotFoundError; ESTALE and EIO, from the open or the fstat (GlusterFS: the file
    replaced by another host between the two), are tried again as `read` does."""
    def once() -> tuple[int, os.stat_result] | None:
        try:
            fd = open_in(folder_fd, path, os.O_RDONLY | os.O_NONBLOCK, False, name)
        except OSError as e:
            if e.errno in TRANSIENT_ERRNOS or isinstance(e, FileNotFoundError):
                raise
            return None
        try:
            return fd, os.fstat(fd)
        except BaseException:
            close(fd)
            raise
    return retrying(once)


def read_opened(fd: int, st: os.stat_result, path: Path | str, kind: str,
                folder_fd: int | None = None) -> bytes:
    """The bytes of a file opened by `open_at` (`st`: its fstat), refused as `read`
    refuses (not a regular file, hard-linked, over LIMITS[kind]). ESTALE or EIO while
    reading: `read` from the open again (`retrying`)."""
    try:
        return _checked_read(fd, st, path, kind, False)
    except OSError as e:
        if e.errno not in TRANSIENT_ERRNOS:
            raise
    return read(path, kind, folder_fd).raw


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
        return Snapshot(path, _checked_read(fd, st, path, kind, direct), signature(st))
    finally:
        close(fd)


def _checked_read(fd: int, st: os.stat_result, path: Path | str, kind: str,
                  direct: bool) -> bytes:
    check_regular(path, st)
    limit = LIMITS[kind]
    if st.st_size > limit:
        raise too_big(path, kind, st.st_size)
    raw = _read_direct_upto(fd, limit + 1) if direct else _read_sized(fd, st.st_size, limit)
    if len(raw) > limit:
        raise too_big(path, kind)
    return raw


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
        close(fd)


def tail(path: Path | str, limit: int, start: int = 0) -> bytes:
    """At most the last `limit` bytes of a regular file, from `start` on."""
    fd = open_beneath(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        check_regular(path, st)
        os.lseek(fd, max(start, st.st_size - limit), os.SEEK_SET)
        return _read_upto(fd, limit)
    finally:
        close(fd)


def lstat_at(folder_fd: int, name: str) -> os.stat_result:
    """What is at `name` in the folder `folder_fd` itself (a link is not followed), as
    `each_entry` sees it."""
    return os.stat(name, dir_fd=folder_fd, follow_symlinks=False)


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
        close(fd)


def exists(path: Path | str) -> bool:
    """Whether anything (a link too) is at `path`; Refused when a folder on the way is a link."""
    try:
        stat_of(path)
        return True
    except FileNotFoundError:
        return False


class Entry(NamedTuple):
    """A name in a folder listing, with what was at it when listed (lstat). A tuple: the
    commands that list every plan make one a file (ops/listing.py)."""

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


def each_entry(folder: Path | str, suffix: str = "", fd: int | None = None,
               known: Container[str] | None = None,
               ) -> Iterator[tuple[str, os.stat_result | None]]:
    """entries() one at a time, as (name, lstat): the daemon's scan of a folder of
    100,000 plans never holds them all in a list (its memory stays what it keeps).
    `fd`: the folder already opened (open_folder) by the caller, who closes it.
    `known`: only the names in it are lstat'ed; any other comes with None, for the
    caller to open and fstat (`open_at`: a first scan reads every file anyway)."""
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
                if known is not None and e.name not in known:
                    yield e.name, None
                    continue
                try:
                    st = os.stat(e.name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # renamed away since it was listed
                yield e.name, st
    finally:
        if own:
            close(fd)


def names(folder: Path | str) -> list[str]:
    """The names in a folder ([] when it is missing)."""
    try:
        fd = open_folder(folder)
    except FileNotFoundError:
        return []
    try:
        return os.listdir(fd)
    finally:
        close(fd)



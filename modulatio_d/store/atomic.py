"""The one way any file of the vault is rewritten: never losing a person's save.

`rewrite(path, apply, base)` computes the new text as `apply(text)` from the
text that was read (`base`), writes it to a temp file in the same folder,
fsyncs it, gives it the original's mode (and owner, where allowed), checks that
the file on disk still holds the bytes that were read (not its mtime, which
moves too coarsely on some kernels; plan files are at most 1 MiB), swaps it in
and fsyncs the folder.

The swap is renameat2(RENAME_EXCHANGE) where the kernel and file system have
it: it hands back what was at the target, so an editor's save that landed
between the check and the swap is seen; `apply` is then run again on the
person's text and written over ours. Elsewhere (NFS, old kernels) it is
os.replace and that last window stays open. Links are resolved first, so the
link is kept and its target rewritten.

What `rewrite` returns is what the writer KNOWS it wrote: its own bytes and the
signature of its own inode, taken through the temp file's descriptor held open
across the swap, never a re-read of the path. A save that lands after the swap
(before the caller could look) is then a different file to the caller's next
look or write, and is treated as a person's save (repaired, honoured), instead
of passing for the writer's own text.
"""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modulatio_d.core.errors import FileChanged

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_ATTEMPTS = 5


@dataclass(frozen=True)
class Snapshot:
    """A file's text as read, with what identifies that version on disk."""

    path: Path | str
    raw: bytes
    signature: tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns


def signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read(path: Path | str) -> Snapshot:
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        return Snapshot(path, f.read(), signature(st))


def _load_libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


_renameat2 = _load_libc()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False when this system cannot."""
    global _renameat2
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        _renameat2 = None  # file system or kernel without it: stop asking
        return False
    raise OSError(err, os.strerror(err), str(b))


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a file that must not exist yet (O_EXCL); visible only once complete."""
    tmp = _temp_file(path, data, mode)
    try:
        os.link(tmp, path)  # fails with FileExistsError if another writer won
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)


def replace(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Atomically put `data` at `path` (a file only this program writes)."""
    tmp = _temp_file(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _temp_file(path: Path, data: bytes, mode: int, st: os.stat_result | None = None) -> Path:
    fd, name = _open_temp(path, data, mode, st)
    os.close(fd)
    return name


def _open_temp(path: Path, data: bytes, mode: int,
               st: os.stat_result | None = None) -> tuple[int, Path]:
    """A complete, fsynced temp file beside `path`: (its open descriptor, its path)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, st.st_mode & 0o7777 if st else mode)
        if st is not None:
            try:
                os.fchown(fd, st.st_uid, st.st_gid)
            except PermissionError:
                pass  # not ours to give away: the file keeps our owner
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    return fd, Path(name)


def _ours(path: Path | str, data: bytes, fd: int, written: os.stat_result) -> Snapshot:
    """The snapshot of what we know we wrote: our bytes and our inode's signature.

    Taken from our own descriptor after the swap, never from a read of the path:
    a person's save landing after the swap is then a different inode (or, saved
    in place, a different size or mtime) and shows as a change at the next look.
    The rename moved our inode's ctime, so ctime is taken after it; size and
    mtime are those we wrote, so a write into our inode meanwhile still shows.
    """
    after = os.fstat(fd)
    return Snapshot(path, data, (after.st_ino, written.st_size, written.st_mtime_ns,
                                 after.st_ctime_ns))


def rewrite(path: Path, apply: Callable[[bytes], bytes], base: Snapshot | None = None) -> Snapshot:
    """Write `apply(base.raw)` over `path` unless a person saved since `base` was read.

    A save seen before the swap: `apply` runs again on the new text. A save
    that lands inside the swap comes back from the exchange: it is put back and
    `apply` runs again on it. Returns the snapshot of what WE wrote (see _ours),
    not a re-read: a save that lands after the swap must not pass for ours.
    Raises FileChanged when the file keeps changing under us; whatever `apply`
    raises passes through with the person's file in place.
    """
    target = Path(os.path.realpath(path))
    expected = (base if base is not None else read(target)).raw
    for _ in range(_ATTEMPTS):
        new = apply(expected)
        _seam("applied", target)
        fd, tmp = _open_temp(target, new, 0, os.stat(target))
        live: Path | None = tmp  # the path of the temp file while it must be removed
        try:
            written = os.fstat(fd)
            current = target.read_bytes()
            if current != expected:
                expected = current  # a person saved after we read: apply to theirs
                continue
            _seam("checked", target)
            if _exchange(tmp, target):
                _seam("exchanged", target)
                displaced = tmp.read_bytes()
                if displaced != expected:
                    # A save landed between the check and the swap: put it back.
                    _exchange(tmp, target)
                    ours = tmp.read_bytes()
                    if ours != new:  # yet another save: it is the newest
                        os.replace(tmp, target)
                        live, displaced = None, ours
                    expected = displaced
                    continue
            else:
                os.replace(tmp, target)
                live = None
            _seam("swapped", target)
            fsync_dir(target.parent)
            snap = _ours(target, new, fd, written)
        finally:
            os.close(fd)
            if live is not None:
                os.unlink(live)
        _seam("done", target)
        return snap
    raise FileChanged(path)


Seam = Callable[[str, Path], None]
seam: Seam | None = None
"""Tests only: called at each point of `rewrite` where a person's save may land
("applied": before the temp file; "checked": after the check, before the swap;
"exchanged": inside the exchange; "swapped": after the swap, before the snapshot;
"done": after it). None in production."""


def _seam(point: str, target: Path) -> None:
    if seam is not None:
        seam(point, target)

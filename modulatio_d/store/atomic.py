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
    os.close(fd)
    return Path(name)


def rewrite(path: Path, apply: Callable[[bytes], bytes], base: Snapshot | None = None) -> Snapshot:
    """Write `apply(base.raw)` over `path` unless a person saved since `base` was read.

    A save seen before the swap: `apply` runs again on the new text. A save
    that lands inside the swap comes back from the exchange: it is put back and
    `apply` runs again on it. Returns the snapshot of what is now on disk.
    Raises FileChanged when the file keeps changing under us; whatever `apply`
    raises passes through with the person's file in place.
    """
    target = Path(os.path.realpath(path))
    expected = (base if base is not None else read(target)).raw
    for _ in range(_ATTEMPTS):
        new = apply(expected)
        tmp: Path | None = _temp_file(target, new, 0, os.stat(target))
        try:
            current = target.read_bytes()
            if current != expected:
                expected = current  # a person saved after we read: apply to theirs
                continue
            if _exchange(tmp, target):
                displaced = tmp.read_bytes()
                if displaced != expected:
                    # A save landed between the check and the swap: put it back.
                    _exchange(tmp, target)
                    ours = tmp.read_bytes()
                    if ours != new:  # yet another save: it is the newest
                        os.replace(tmp, target)
                        tmp, displaced = None, ours
                    expected = displaced
                    continue
            else:
                os.replace(tmp, target)
                tmp = None
        finally:
            if tmp is not None:
                os.unlink(tmp)
        fsync_dir(target.parent)
        return read(target)
    raise FileChanged(path)

"""The one way any file of the vault is rewritten: never losing a person's save.

`rewrite(path, apply, base)` computes the new text as `apply(text)` from the
text that was read (`base`), writes it to a temp file in the same folder,
fsyncs it, gives it the original's mode (and owner, where allowed), checks that
the file on disk still holds the bytes that were read (not its mtime, which
moves too coarsely on some kernels; plan files are at most 64 MiB), swaps it in
and fsyncs the folder.

The swap is renameat2(RENAME_EXCHANGE) where the kernel and file system have
it: it hands back what was at the target, so an editor's save that landed
between the check and the swap is seen; `apply` is then run again on the
person's text and written over ours. Elsewhere (NFS, old kernels) it is
os.replace and that last window stays open. Every step goes through store/fs/:
a link (at the file or on the way) is never written through, and a file that is
not a regular file with one link is refused.

What `rewrite` returns is what the writer KNOWS it wrote: its own bytes and the
signature of its own inode, taken through the temp file's descriptor held open
across the swap, never a re-read of the path. A save that lands after the swap
(before the caller could look) is then a different file to the caller's next
look or write, and is treated as a person's save (repaired, honoured), instead
of passing for the writer's own text.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from modulatio_d.core.errors import FileChanged
from modulatio_d.store import fs
from modulatio_d.store.fs import Snapshot, signature
from modulatio_d.store.fs.reading import READ_RETRIES, TRANSIENT_ERRNOS, retrying

__all__ = ["Snapshot", "signature", "read", "write_new", "replace", "rewrite", "fsync_dir",
           "retrying", "READ_RETRIES", "TRANSIENT_ERRNOS"]

_ATTEMPTS = 5


def read(path: Path | str, kind: str = "plan") -> Snapshot:
    """fs.read: ESTALE and EIO (another host's rename on a shared filesystem) are tried
    again briefly; past that an OSError, never a bad file."""
    return fs.read(path, kind)


_renameat2 = fs.writing._libc_renameat2 if fs.writing.EXCHANGE else None
"""Not None where renameat2 (RENAME_EXCHANGE) may be tried: for tests that need it."""


def _temp_file(path: Path, data: bytes, mode: int | None,
               st: os.stat_result | None = None, sync: bool = True,
               folder: fs.Folder | None = None) -> Path:
    """A complete temp file beside `path`, fsynced when `sync` (store/fs/ temp)."""
    return fs.temp(path, data, like=st, cap=mode, sync=sync, folder=folder)


def _open_temp(path: Path, data: bytes, st: os.stat_result,
               folder: fs.Folder | None = None) -> tuple[int, Path]:
    """`_temp_file` for a rewrite of the file `st` describes, its descriptor kept open."""
    return fs.open_temp(path, data, like=st, folder=folder)


def _exchange(a: Path, b: Path, folder: fs.Folder | None = None) -> bool:
    """Swap two paths of one folder atomically; False when this system cannot."""
    return fs.exchange(a, b, folder)


def fsync_dir(folder: Path, opened: fs.Folder | None = None) -> None:
    fs.fsync_dir(folder, opened)


def write_new(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write a file that must not exist yet (FileExistsError); visible only once complete.

    Its mode is 0o666 (or `mode`) masked by the umask."""
    tmp = _temp_file(path, data, mode)
    fs.publish(tmp, path)
    fsync_dir(path.parent)


def replace(path: Path, data: bytes, mode: int | None = None, durable: bool = True,
            folders: bool = False) -> None:
    """Atomically put `data` at `path` (a file only this program writes).

    Not `durable`: no fsync of the data or the folder. Readers see the old or the new
    file, never a part, while the system runs; after a power loss the file may be the
    old one, or empty (for a writer whose readers take either as "no record").
    `folders`: the missing folders are made, when the folder is found missing. The
    folder is opened once for the temp file, the rename and its fsync (fs.Folder)."""
    with fs.Folder(path, create=folders) as d:
        tmp = _temp_file(path, data, mode, sync=durable, folder=d)
        try:
            fs.rename(tmp, path, d)
        except BaseException:
            fs.unlink(tmp, missing_ok=True, folder=d)
            raise
        if durable:
            fsync_dir(path.parent, d)


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


def rewrite(path: Path, apply: Callable[[bytes], bytes], base: Snapshot | None = None,
            kind: str = "plan") -> Snapshot:
    """Write `apply(base.raw)` over `path` unless a person saved since `base` was read.

    A save seen before the swap: `apply` runs again on the new text. A save
    that lands inside the swap comes back from the exchange: it is put back and
    `apply` runs again on it. Returns the snapshot of what WE wrote (see _ours),
    not a re-read: a save that lands after the swap must not pass for ours.
    Raises FileChanged when the file keeps changing under us; whatever `apply`
    raises passes through with the person's file in place. A link, or a file
    that is not a regular file with one link, is fs.Refused: never written through.
    """
    target = Path(path)
    # The folder is opened once for the whole rewrite: the temp file, the reads by name,
    # the exchange, the fsync and the unlink (fs.Folder: never through a link).
    with fs.Folder(target) as d:
        expected = (base if base is not None else fs.read(target, kind, d.fd)).raw
        for _ in range(_ATTEMPTS):
            new = apply(expected)
            _seam("applied", target)
            st = fs.stat_of(target, d.fd)
            fs.check_regular(target, st)
            fd, tmp = _open_temp(target, new, st, folder=d)
            live: Path | None = tmp  # the path of the temp file while it must be removed
            try:
                written = os.fstat(fd)
                current = fs.read(target, kind, d.fd).raw
                if current != expected:
                    expected = current  # a person saved after we read: apply to theirs
                    continue
                _seam("checked", target)
                if _exchange(tmp, target, folder=d):
                    _seam("exchanged", target)
                    displaced = fs.read(tmp, kind, d.fd).raw
                    if displaced != expected:
                        # A save landed between the check and the swap: put it back.
                        _exchange(tmp, target, folder=d)
                        ours = fs.read(tmp, kind, d.fd).raw
                        if ours != new:  # yet another save: it is the newest
                            fs.rename(tmp, target, d)
                            live, displaced = None, ours
                        expected = displaced
                        continue
                else:
                    fs.rename(tmp, target, d)
                    live = None
                _seam("swapped", target)
                fsync_dir(target.parent, d)
                snap = _ours(target, new, fd, written)
            finally:
                fs.close(fd)
                if live is not None:
                    fs.unlink(live, missing_ok=True, folder=d)
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

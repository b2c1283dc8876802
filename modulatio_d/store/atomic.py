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
os.replace and that last window stays open. Every step goes through store/fs/:
a link (at the file or on the way) is never written through, and a file that is
not a regular file with one link is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modulatio_d.core.errors import FileChanged
from modulatio_d.store import fs
from modulatio_d.store.fs import Snapshot, signature

__all__ = ["Snapshot", "signature", "read", "write_new", "replace", "rewrite", "fsync_dir"]

_ATTEMPTS = 5


def read(path: Path | str, kind: str = "plan") -> Snapshot:
    return fs.read(path, kind)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths of one folder atomically; False when this system cannot."""
    return fs.exchange(a, b)


def fsync_dir(folder: Path) -> None:
    fs.fsync_dir(folder)


def write_new(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write a file that must not exist yet (FileExistsError); visible only once complete.

    Its mode is 0o666 (or `mode`) masked by the umask."""
    tmp = fs.temp(path, data, cap=mode)
    fs.publish(tmp, path)
    fsync_dir(path.parent)


def replace(path: Path, data: bytes, mode: int | None = None) -> None:
    """Atomically put `data` at `path` (a file only this program writes)."""
    tmp = fs.temp(path, data, cap=mode)
    try:
        fs.rename(tmp, path)
    except BaseException:
        fs.unlink(tmp, missing_ok=True)
        raise
    fsync_dir(path.parent)


def rewrite(path: Path, apply: Callable[[bytes], bytes], base: Snapshot | None = None,
            kind: str = "plan") -> Snapshot:
    """Write `apply(base.raw)` over `path` unless a person saved since `base` was read.

    A save seen before the swap: `apply` runs again on the new text. A save
    that lands inside the swap comes back from the exchange: it is put back and
    `apply` runs again on it. Returns the snapshot of what is now on disk.
    Raises FileChanged when the file keeps changing under us; whatever `apply`
    raises passes through with the person's file in place. A link, or a file
    that is not a regular file with one link, is fs.Refused: never written through.
    """
    target = Path(path)
    expected = (base if base is not None else read(target, kind)).raw
    for _ in range(_ATTEMPTS):
        new = apply(expected)
        st = fs.stat_of(target)
        fs.check_regular(target, st)
        tmp: Path | None = fs.temp(target, new, like=st)
        try:
            current = read(target, kind).raw
            if current != expected:
                expected = current  # a person saved after we read: apply to theirs
                continue
            if _exchange(tmp, target):
                displaced = read(tmp, kind).raw
                if displaced != expected:
                    # A save landed between the check and the swap: put it back.
                    _exchange(tmp, target)
                    ours = read(tmp, kind).raw
                    if ours != new:  # yet another save: it is the newest
                        fs.rename(tmp, target)
                        tmp, displaced = None, ours
                    expected = displaced
                    continue
            else:
                fs.rename(tmp, target)
                tmp = None
        finally:
            if tmp is not None:
                fs.unlink(tmp, missing_ok=True)
        fsync_dir(target.parent)
        return read(target, kind)
    raise FileChanged(path)

"""Changing vault folders and files: mkdir, temp files, rename, exchange, publish and
unlink, each by name on a folder descriptor opened beneath the root (appends:
appending.py)."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modulatio_d.store.fs.closing import close
from modulatio_d.store.fs.opening import (
    OPEN,
    Refused,
    check_regular,
    libc_fn,
    locate,
    open_beneath,
    open_folder,
    parts_of,
)
from modulatio_d.store.fs.reading import stat_of

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_libc_renameat2 = libc_fn("renameat2")
if _libc_renameat2 is not None:
    _libc_renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                ctypes.c_uint]
EXCHANGE = _libc_renameat2 is not None
"""False once renameat2 was refused (no RENAME_EXCHANGE here: NFS, old kernels)."""
NOREPLACE = _libc_renameat2 is not None
"""False once renameat2(RENAME_NOREPLACE) was refused: write_new falls back to link."""


def folder_cap(file_mode: int) -> int:
    """The folder mode no more open than files of `file_mode`: search where read is."""
    return file_mode | ((file_mode & 0o444) >> 2)


def mkdirs(folder: Path | str, cap: int | None = None, missing: bool = False) -> None:
    """Make `folder` and the missing folders above it beneath its root: 0o777 & `cap`,
    masked by the umask (a setgid parent gives its group and its setgid bit). Only a
    folder found missing is made: an existing one costs no mkdir (no write at all).
    `missing`: the caller's open of `folder` just said ENOENT or ENOTDIR (not asked again)."""
    mode = 0o777 & (0o777 if cap is None else cap)
    root, rel, vault = locate(folder)
    if not vault:
        os.makedirs(folder, mode, exist_ok=True)  # outside every vault: the caller's own
        return
    try:
        if not missing:
            close(open_beneath(folder, os.O_PATH | os.O_DIRECTORY))
            return  # there already: the common case, one open
    except Refused:
        raise  # a link on the way
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise  # missing, or a file in the way: the walk below makes or names it
    dirfd, opened = root.fd(), []
    shown = root.path
    try:
        for part in parts_of(rel, folder):
            if part == ".":
                continue
            shown = os.path.join(shown, part)
            dirfd = _enter(dirfd, part, mode, shown)
            opened.append(dirfd)
    finally:
        for fd in opened:
            close(fd)


def _enter(dirfd: int, part: str, mode: int, shown: str) -> int:
    """The folder `part` of `dirfd`, made first if it is missing; never a link."""
    for _ in range(2):
        try:
            return os.open(part, os.O_PATH | os.O_DIRECTORY | OPEN, dir_fd=dirfd)
        except FileNotFoundError:
            try:
                os.mkdir(part, mode, dir_fd=dirfd)
            except FileExistsError:
                pass  # made by another writer meanwhile
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            st = os.stat(part, dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise Refused(shown, "is a symbolic link: links are never followed in the "
                              "vault", "put the folder itself there", errno.ELOOP) from None
            raise Refused(shown, "is not a folder", "move the file away") from None
    return os.open(part, os.O_PATH | os.O_DIRECTORY | OPEN, dir_fd=dirfd)


class Folder:
    """The folder of `path`, opened beneath its root, and the name of `path` in it.

    Passed as `folder` to the calls below, one descriptor serves several changes of
    files in that folder (a rewrite's temp file, exchange, fsync and unlink) where each
    call would otherwise open the folder again with a walk from the root. The names are
    still opened, made, renamed and removed by name in it, never through a link (what
    the walk from the root would end with). `create`: the missing folders are made
    when the folder is found missing (an existing one costs no mkdir and no walk more).
    """

    def __init__(self, path: Path | str, create: bool = False, cap: int | None = None):
        self.path = os.path.dirname(os.path.abspath(os.fspath(path)))
        self.name = os.path.basename(os.fspath(path))
        try:
            self.fd = open_folder(self.path)
        except OSError as e:
            if not create or isinstance(e, Refused) or e.errno not in (errno.ENOENT,
                                                                        errno.ENOTDIR):
                raise
            mkdirs(self.path, cap, missing=True)  # makes them, or names what is in the way
            self.fd = open_folder(self.path)

    def name_of(self, path: Path | str) -> str:
        """The name of `path` in this folder (ValueError when it lies elsewhere)."""
        if os.path.dirname(os.path.abspath(os.fspath(path))) != self.path:
            raise ValueError(f"{path} is not in {self.path}")
        return os.path.basename(os.fspath(path))

    def close(self) -> None:
        close(self.fd)

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_Folder = Folder


@contextmanager
def _in(path: Path | str, folder: Folder | None, create: bool = False) -> Iterator[
        tuple[int, str]]:
    """(folder descriptor, name) of `path`: the caller's `folder`, else opened for the call."""
    if folder is not None:
        yield folder.fd, folder.name_of(path)
        return
    with Folder(path, create) as d:
        yield d.fd, d.name


def temp(path: Path | str, data: bytes, *, like: os.stat_result | None = None,
         cap: int | None = None, sync: bool = True, folder: Folder | None = None,
         create: bool = False) -> Path:
    """A complete temp file `.<name>.<random>.tmp` beside `path`, fsynced unless not `sync`.

    Its mode: `like`'s (and owner, where allowed) when rewriting a file, else
    0o666 & `cap`, masked by the umask.
    """
    fd, tmp = open_temp(path, data, like=like, cap=cap, sync=sync, folder=folder, create=create)
    close(fd)
    return tmp


def open_temp(path: Path | str, data: bytes, *, like: os.stat_result | None = None,
              cap: int | None = None, sync: bool = True, folder: Folder | None = None,
              create: bool = False) -> tuple[int, Path]:
    """`temp`, with its descriptor still open: (descriptor, path). `folder`: the
    folder of `path` already open (Folder); `create`: its missing folders made first."""
    with _in(path, folder, create) as (dfd, base):
        while True:
            name = f".{base}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | OPEN,
                             0o600 if like is not None else 0o666 & (0o666 if cap is None else cap),
                             dir_fd=dfd)
                break
            except FileExistsError:
                continue
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if like is not None:
                os.fchmod(fd, like.st_mode & 0o7777)
                try:
                    os.fchown(fd, like.st_uid, like.st_gid)
                except PermissionError:
                    pass  # not ours to give away: the file keeps our owner
            if sync:
                os.fsync(fd)
        except BaseException:
            close(fd)
            os.unlink(name, dir_fd=dfd)
            raise
    return fd, Path(os.path.dirname(os.path.abspath(os.fspath(path))), name)


def _same_folder(a: Path | str, b: Path | str) -> None:
    if os.path.dirname(os.path.abspath(a)) != os.path.dirname(os.path.abspath(b)):
        raise ValueError(f"{a} and {b} are not in one folder")


def rename(src: Path | str, dst: Path | str, folder: Folder | None = None) -> None:
    """Rename `src` over `dst` (one folder); a link at `dst` is replaced, never followed."""
    _same_folder(src, dst)
    with _in(dst, folder) as (dfd, name):
        os.replace(os.path.basename(src), name, src_dir_fd=dfd, dst_dir_fd=dfd)


def _renameat2(fd: int, src: str, dst: str, flags: int) -> bool:
    """renameat2 in one folder; False when this system cannot (the flag is then dropped)."""
    global EXCHANGE, NOREPLACE
    if _libc_renameat2 is None:
        return False
    if _libc_renameat2(fd, os.fsencode(src), fd, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        if flags == _RENAME_EXCHANGE:
            EXCHANGE = False  # file system or kernel without it: stop asking
        else:
            NOREPLACE = False
        return False
    raise OSError(err, os.strerror(err), dst)


def exchange(a: Path | str, b: Path | str, folder: Folder | None = None) -> bool:
    """Swap two names of one folder atomically; False when this system cannot."""
    _same_folder(a, b)
    if not EXCHANGE:
        return False
    with _in(b, folder) as (dfd, name):
        return _renameat2(dfd, os.path.basename(a), name, _RENAME_EXCHANGE)


def publish(src: Path | str, dst: Path | str) -> None:
    """Give the complete file `src` the name `dst`, which must be free (FileExistsError);
    `src` is gone after, whatever happened. renameat2(RENAME_NOREPLACE), else link + unlink
    (where a reader may see two links for a moment)."""
    _same_folder(src, dst)
    with _Folder(dst) as d:
        name = os.path.basename(src)
        try:
            if NOREPLACE and _renameat2(d.fd, name, d.name, _RENAME_NOREPLACE):
                return
            os.link(name, d.name, src_dir_fd=d.fd, dst_dir_fd=d.fd, follow_symlinks=False)
        except BaseException:
            os.unlink(name, dir_fd=d.fd)
            raise
        os.unlink(name, dir_fd=d.fd)


def rename_new(src: Path | str, dst: Path | str) -> None:
    """Rename `src` to `dst` (one folder) only when `dst` is free (FileExistsError, and
    `src` is left as it was). renameat2(RENAME_NOREPLACE), else link + unlink."""
    _same_folder(src, dst)
    with _Folder(dst) as d:
        name = os.path.basename(src)
        if NOREPLACE and _renameat2(d.fd, name, d.name, _RENAME_NOREPLACE):
            return
        os.link(name, d.name, src_dir_fd=d.fd, dst_dir_fd=d.fd, follow_symlinks=False)
        os.unlink(name, dir_fd=d.fd)


def move(src: Path | str, dst: Path | str) -> None:
    """Move `src` (a file or a folder) to `dst` in another folder, both opened beneath the
    vault; `dst` must be free (FileExistsError; checked first: callers hold a lock)."""
    with _Folder(src) as s, _Folder(dst, create=True) as d:
        try:
            os.stat(d.name, dir_fd=d.fd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(s.name, d.name, src_dir_fd=s.fd, dst_dir_fd=d.fd)
            return
        raise FileExistsError(errno.EEXIST, "already there", str(dst))


def unlink(path: Path | str, missing_ok: bool = False, folder: Folder | None = None) -> None:
    """Remove the name `path` (a link is removed, not followed)."""
    try:
        with _in(path, folder) as (dfd, name):
            os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        if not missing_ok:
            raise


def pwrite_all(fd: int, data: bytes, at: int) -> int:
    """Write all of `data` at offset `at` of `fd` (pwrite may write less); where it ends."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, at)
        view, at = view[n:], at + n
    return at


def fsync_dir(folder: Path | str, opened: Folder | None = None) -> None:
    if opened is not None:
        os.fsync(opened.fd)
        return
    fd = open_folder(folder)
    try:
        os.fsync(fd)
    finally:
        close(fd)


CREATE_RETRIES = 3
"""How often an open with O_CREAT (not O_EXCL) is tried again after EEXIST."""


def open_regular(path: Path | str, flags: int, *, cap: int | None = None,
                 folders: bool = False, folder: Folder | None = None) -> int:
    """A descriptor of the regular file `path` (checked: one link, no link followed).

    `flags` as for os.open (O_CREAT makes it with 0o666 & `cap`, masked by the
    umask); `folders` makes the missing folders first. Blocking mode restored.
    O_CREAT alone answered EEXIST (GlusterFS: two hosts made it at once) is tried again.
    `folder`: the folder of `path` already open (Folder): the name is opened in it
    (O_NOFOLLOW); anything but a missing file is asked again of the walk from the root.
    """
    mode = 0o666 & (0o666 if cap is None else cap)
    try:
        fd = _open_creating(path, flags, mode, folder)
    except (FileNotFoundError, NotADirectoryError):  # a file in a folder's way: mkdirs
        # refuses it, naming it
        # The folders are made only when the open finds one missing: an append to an
        # existing folder (every event, every usage line) costs one walk, not two.
        if not (folders and flags & os.O_CREAT):
            raise
        mkdirs(Path(path).parent)
        fd = _open_creating(path, flags, mode)
    try:
        check_regular(path, os.fstat(fd))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        close(fd)
        raise
    return fd


def _open_creating(path: Path | str, flags: int, mode: int,
                   folder: Folder | None = None) -> int:
    if folder is not None:
        try:
            return os.open(folder.name_of(path), flags | os.O_NONBLOCK | OPEN, mode,
                           dir_fd=folder.fd)
        except FileNotFoundError:
            raise
        except OSError:
            pass  # a link, EEXIST from another host...: the walk below says or retries
    tries = CREATE_RETRIES if flags & (os.O_CREAT | os.O_EXCL) == os.O_CREAT else 0
    for _ in range(tries):
        try:
            return open_beneath(path, flags | os.O_NONBLOCK, mode)
        except FileExistsError:  # GlusterFS's create met another host's: the file is there
            pass
    return open_beneath(path, flags | os.O_NONBLOCK, mode)


def mode_of(path: Path | str) -> int | None:
    """The permission bits of the regular file at `path` (None when it is not there)."""
    try:
        st = stat_of(path)
    except (FileNotFoundError, Refused):
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None

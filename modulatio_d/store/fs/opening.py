"""Opening a path beneath a vault's root descriptor without following links: the
mechanism of store/fs (its docstring states the protocol)."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import weakref
from pathlib import Path

from modulatio_d.core.errors import BadFile
from modulatio_d.store.fs.closing import close

KiB = 1024
MiB = 1024 * KiB

LIMITS: dict[str, int] = {
    # What a person writes is held to 1 MiB (store/vault.decode: the file less the
    # daemon's reflection_log); the rest is room for that log, so a long run never
    # hits a limit the daemon's own writes create (about 250 bytes an attempt).
    "plan": 64 * MiB,
    "cron entry": 1 * MiB,
    "ticket": 1 * MiB,
    "config": 1 * MiB,
    "pause": 64 * KiB,  # .modulatio/pause.yaml: a few lines
    "record": 8 * MiB,      # the daemon's keys of a 1 MiB plan, as JSON (\\u escapes)
    "record log": 256 * MiB,  # a plan's reflection_log, a line an attempt (owned_keys.py)
    "reflection log": 1024 * MiB,  # older reflection entries beside a plan (reflections.py)
    "heartbeat": 64 * KiB,
    "lock file": 64 * KiB,  # who holds it: a line of JSON
    "pid file": 4 * KiB,
    "usage line": 64 * KiB,
    "event line": 64 * KiB,
    "doctor probe": 64 * KiB,  # the files `modulatio doctor` writes and reads back
    "trigger state": 16 * MiB,  # a watch's file signatures (store/triggers.py MAX_WATCHED)
    "api token": 64 * KiB,    # .modulatio/api-token: a few lines
    "api record": 2 * MiB,    # an idempotency record: the first answer to a request
}
"""Bytes a file of each kind may have; for `usage line` and `event line`, one line."""

_HINTS = {
    "plan": "move long text out of the plan",
    "cron entry": "move long text out of the entry, into a template plan",
    "ticket": "move long notes out of the ticket",
    "config": "keep agent options short; point to files for long ones",
    "pause": "write it again with `modulatio pause`, or remove it to resume all",
    "record": "delete it: the plan file is then trusted as it stands",
    "record log": "delete it and its record (.json): the plan file is then trusted as it stands",
    "heartbeat": "delete it: its daemon writes a new one",
    "reflection log": "move it away with `plan rerun` (its run's folder keeps it)",
}

_SYSOPENAT2 = 437
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
OPEN = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_SYSOPENAT2_C = ctypes.c_long(_SYSOPENAT2)  # made once: openat2 runs for every file read
_HOW_SIZE = ctypes.c_size_t(ctypes.sizeof(_OpenHow))


def libc_fn(name: str):
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


_syscall = libc_fn("syscall")
if _syscall is not None:
    _syscall.restype = ctypes.c_long

USE_OPENAT2 = _syscall is not None and os.uname().sysname == "Linux"
"""False: open by the O_NOFOLLOW walk (set when openat2 says ENOSYS; tests set it)."""


# --- errors ---------------------------------------------------------------------------

class Refused(BadFile, OSError):
    """A vault file that is not opened: a link, not a regular file, hard-linked, too big."""

    def __init__(self, path: Path | str, reason: str, hint: str, err: int = errno.EPERM):
        BadFile.__init__(self, path, reason, None, hint)
        self.errno, self.strerror, self.filename = err, reason, str(path)

    def __str__(self) -> str:
        return str(self.args[0])


_TYPES = ((stat.S_ISDIR, "a folder", "rename or remove the folder"),
          (stat.S_ISFIFO, "a FIFO (named pipe)", "remove it"),
          (stat.S_ISSOCK, "a socket", "remove it"),
          (stat.S_ISCHR, "a character device", "remove it"),
          (stat.S_ISBLK, "a block device", "remove it"),
          (stat.S_ISLNK, "a symbolic link", "put the file itself here instead of a link"))


def _not_regular(path: Path | str, st: os.stat_result) -> Refused:
    what, hint = "not a regular file", "remove it"
    for test, name, fix in _TYPES:
        if test(st.st_mode):
            what, hint = name, fix
    return Refused(path, f"is {what}, not a regular file: only regular files are read or "
                   "written in the vault", hint)


def check_regular(path: Path | str, st: os.stat_result) -> None:
    """Refuse `st` unless it is a regular file with one link."""
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path, st)
    if st.st_nlink > 1:
        raise Refused(path, f"has {st.st_nlink} hard links: it may be a file outside the "
                      "vault linked in, so it is neither read nor written",
                      f"replace it with a copy: cp {path} {path}.copy && mv {path}.copy {path}")


def too_big(path: Path | str, kind: str, size: int | None = None) -> Refused:
    limit = LIMITS[kind]
    said = (f"file is {size} bytes, more than the {limit} allowed" if size is not None
            else f"file grew past the {limit} bytes allowed while it was read")
    return Refused(path, said, _HINTS.get(kind, "make it smaller"), errno.EFBIG)


# --- roots ----------------------------------------------------------------------------

class Root:
    """A folder every path beneath which is opened relative to its descriptor."""

    def __init__(self, path: Path | str):
        self.path = str(path)
        self._fd: int | None = None

    def fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            # Closed by the same os it was opened by: a Root made under a fake os (the
            # tests' pyfakefs) and collected after it is gone must not close a real fd.
            self._close = os.close
        return self._fd

    def replaced(self) -> bool:
        """Whether the folder at the path is no longer the one opened (moved, made anew)."""
        if self._fd is None:
            return False
        try:
            a, b = os.fstat(self._fd), os.stat(self.path)
        except OSError:
            return True
        return (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                self._close(fd)
            except OSError:  # a fake os's descriptor, its filesystem gone
                pass

    def __del__(self) -> None:
        self.close()


_roots: weakref.WeakValueDictionary[str, Root] = weakref.WeakValueDictionary()


def forget_descriptors() -> None:
    """In a forked child that has closed every descriptor it inherited (a pool's worker,
    daemon/worker_fork.py): each Root opens its folder again when next used, and never
    uses or closes the number it held, which the child may have reused already."""
    for root in list(_roots.values()):
        root._fd = None


def register(path: Path | str) -> Root:
    """The Root of a vault folder (a real path, no links in it); the caller keeps it alive.

    Vaults made for one folder share its Root, opened once; a Vault made after the
    folder was replaced (removed and made anew) gets a new one."""
    global _keys
    key = os.path.normpath(str(path))
    root = _roots.get(key)
    if root is None or root.replaced():
        root = Root(key)
        _roots[key] = root
        weakref.finalize(root, _forget, key)
        if all(k != key for k, _ in _keys):
            _keys = (*_keys, (key, key.rstrip(os.sep) + os.sep))
            _placed.clear()  # a longer root may now hold paths placed under a shorter one
    return root


# The keys of the live Roots in _roots, each with its prefix: locate() runs for every
# file read (100,000 at a big vault's first scan), and a WeakValueDictionary's keys()
# costs more than the rest of it. A key is dropped when its Root is let go (so a process
# that made many vaults, a test session, does not look through the dead ones); a tuple,
# replaced whole, so that another thread looping over it is never disturbed.
_keys: tuple[tuple[str, str], ...] = ()


def _forget(key: str) -> None:
    global _keys
    if _roots.get(key) is None:  # not a Root made anew for the same folder
        _keys = tuple(k for k in _keys if k[0] != key)
    _placed.clear()


# Where an absolute path was found (its root's key, its parts relative to it), by the
# path as given: a daemon opens the same few dozen paths again and again (the pause file,
# events.jsonl, its plan), and abspath and the root search cost more than the openat2.
# Lexical only (no file system is looked at), so it never goes stale but when the roots
# change: cleared then (register, _forget). Bounded: cleared whole when full.
_placed: dict[str, tuple[str, str]] = {}
_PLACED_MAX = 4096


def locate(path: Path | str) -> tuple[Root, str, bool]:
    """(root, path relative to it, whether the root is a vault's) of an absolute path."""
    given = path if isinstance(path, str) else os.fspath(path)
    hit = _placed.get(given)
    if hit is not None:
        root = _roots.get(hit[0])
        if root is not None:
            return root, hit[1], True
    p = os.path.abspath(given)
    while True:
        best = None
        for key, prefix in _keys:
            if (p == key or p.startswith(prefix)) and (best is None or len(key) > len(best)):
                best = key
        if best is None:
            return Root(os.path.dirname(p)), os.path.basename(p), False
        root = _roots.get(best)
        if root is not None:  # p is normalized and lies in best: the rest of it is relative
            rel = "." if p == best else p[len(best.rstrip(os.sep)) + 1:]
            if given.startswith(os.sep):  # a relative one depends on the working folder
                if len(_placed) >= _PLACED_MAX:
                    _placed.clear()
                _placed[given] = (best, rel)
            return root, rel, True
        _forget(best)  # its Root was let go, its finalizer not yet run


# --- opening --------------------------------------------------------------------------

def _openat2(dirfd: int, rel: str, flags: int, mode: int) -> int:
    if flags & os.O_PATH:  # openat2 takes no other flags with O_PATH (EINVAL)
        flags &= os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    how = _OpenHow(flags, mode if flags & os.O_CREAT else 0,
                   _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS)
    again = SCOPED_RETRIES
    while True:
        fd = _syscall(_SYSOPENAT2_C, ctypes.c_int(dirfd), ctypes.c_char_p(os.fsencode(rel)),
                      ctypes.byref(how), _HOW_SIZE)
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err in (errno.EAGAIN, errno.EXDEV) and again > 0:
            again -= 1  # a scoped walk that met a change on its way: see SCOPED_RETRIES
        elif err != errno.EINTR:
            raise OSError(err, os.strerror(err))


SCOPED_RETRIES = 5
"""How often an openat2 that answered EAGAIN or EXDEV is tried again. `rel` never holds
`..` (parts_of), so neither means a climb out of the vault: the kernel could not show
the walk stayed beneath the root because something on its way changed meanwhile (a
rename: EAGAIN, as openat2(2) says; on GlusterFS, a folder's entry dropped and looked up
again by the client: EXDEV, 2 appends to events.jsonl of one multihost soak lost so).
One that still fails is told as before."""


def _walk(dirfd: int, parts: list[str], flags: int, mode: int) -> int:
    opened: list[int] = []
    try:
        for part in parts[:-1]:
            dirfd = os.open(part, os.O_PATH | os.O_DIRECTORY | OPEN, dir_fd=dirfd)
            opened.append(dirfd)
        return os.open(parts[-1], flags | OPEN, mode, dir_fd=dirfd)
    finally:
        for fd in opened:
            close(fd)


def parts_of(rel: str, path: Path | str) -> list[str]:
    parts = [p for p in rel.split(os.sep) if p not in ("", ".")]
    if ".." in parts or os.path.isabs(rel):
        raise Refused(path, "leads out of the vault", "name files inside the vault",
                      errno.EXDEV)
    return parts or ["."]


def _plain(rel: str) -> bool:
    """Whether `rel` is already what parts_of joins again: relative, no empty, `.` or `..`
    component (what locate() gives for a path beneath its root: checked in C, not split)."""
    if not rel or os.sep in (rel[0], rel[-1]) or rel in (".", "..") or "//" in rel:
        return False
    ends = f"{os.sep}{rel}{os.sep}"
    return f"{os.sep}.{os.sep}" not in ends and f"{os.sep}..{os.sep}" not in ends


def _raw_open(root: Root, rel: str, flags: int, mode: int, path: Path | str) -> int:
    global USE_OPENAT2
    if USE_OPENAT2:
        try:
            return _openat2(root.fd(), rel if _plain(rel) else os.sep.join(parts_of(rel, path)),
                            flags | OPEN, mode)
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
            USE_OPENAT2 = False  # this kernel has none: walk from now on
    return _walk(root.fd(), parts_of(rel, path), flags, mode)


def _explain(root: Root, rel: str, path: Path | str, err: OSError) -> OSError:
    """The Refused that says which component is a link or not a folder, else `err`."""
    if err.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV, errno.ENXIO, errno.EISDIR):
        return err
    dirfd, shown, opened = root.fd(), root.path, []
    parts = parts_of(rel, path)
    try:
        for i, part in enumerate(parts):
            try:
                st = os.stat(part, dir_fd=dirfd, follow_symlinks=False)
            except OSError:
                return err
            shown = os.path.join(shown, part)
            last = i == len(parts) - 1
            if stat.S_ISLNK(st.st_mode):
                try:
                    to = f" (to {os.readlink(part, dir_fd=dirfd)!r})"
                except OSError:
                    to = ""
                where = (f"is a symbolic link{to}" if last
                         else f"lies in {shown}, a symbolic link{to}")
                return Refused(path, f"{where}: links are never followed in the vault",
                               "put the file or folder itself there instead of a link",
                               errno.ELOOP)
            if last:
                return err if stat.S_ISREG(st.st_mode) else _not_regular(path, st)
            if not stat.S_ISDIR(st.st_mode):
                return err
            try:
                dirfd = os.open(part, os.O_PATH | os.O_DIRECTORY | OPEN, dir_fd=dirfd)
            except OSError:
                return err
            opened.append(dirfd)
        return err
    finally:
        for fd in opened:
            close(fd)


def open_beneath(path: Path | str, flags: int, mode: int = 0o666) -> int:
    root, rel, _ = locate(path)
    try:
        return _raw_open(root, rel, flags, mode, path)
    except Refused:
        raise
    except OSError as e:
        if e.filename is None:
            e.filename = str(path)
        raise _explain(root, rel, path, e) from None


def open_folder(folder: Path | str) -> int:
    """A readable descriptor of a folder beneath its root (FileNotFoundError, Refused).

    A folder outside every vault is the caller's own path: it is followed."""
    if not locate(folder)[2]:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return open_beneath(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK)


def check_folder(folder: Path | str) -> None:
    """Refuse a folder that is a link, lies in one, is not a folder or cannot be opened;
    a missing folder is fine."""
    try:
        close(open_folder(folder))
    except FileNotFoundError:
        pass
    except Refused:
        raise
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            raise Refused(folder, "is not a folder", "move the file away") from None
        raise Refused(folder, f"cannot be opened: {e.strerror}",
                      "give the daemon's user read and search permission on it",
                      e.errno or errno.EIO) from None

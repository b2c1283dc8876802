"""Every file operation on the vault: beneath its root descriptor, never through a link.

Protocol:
1. A `Vault` registers its root (`register`): the folder is opened once, as an
   O_PATH descriptor, when first used. Every path the store, the daemon and
   the commands touch is absolute and built from that root (`vault.root /
   ...`), so it names its root: `_locate` turns it into a path relative to the
   longest registered root, lexically (no name of the vault may be `..`).
2. A relative path is opened with openat2(root_fd, rel, RESOLVE_BENEATH |
   RESOLVE_NO_SYMLINKS): a symbolic link anywhere in it, the last component
   included, fails with ELOOP in the kernel, and a climb out with EXDEV, so a
   link planted between a check and a use redirects nothing. Where openat2 is
   missing (ENOSYS: Linux before 5.6, some seccomp filters) the same is done by
   a walk: openat(O_PATH | O_DIRECTORY | O_NOFOLLOW) per folder, then the last
   component with O_NOFOLLOW. openat2 is syscall 437 on every architecture
   (x86_64, aarch64, arm, i386...: the syscall numbers from 424 up are shared).
3. What changes a folder (mkdir, rename, the exchange of atomic writes,
   unlink, the O_EXCL publish of a new file, temp files) is done by name on a
   descriptor of the folder opened as in 2 (mkdirat, renameat2, unlinkat,
   linkat): nothing is created, renamed or removed through a linked folder.
4. Reads open with O_NONBLOCK (a FIFO never blocks, a signal is never kept
   waiting) and O_NOCTTY, then fstat, and refuse what is not a regular file,
   a file with more than one hard link (it may be a file outside the vault,
   linked in), and a file over its kind's limit (LIMITS): the size is checked
   before reading and at most limit + 1 bytes are read, so a file that grows
   while read is refused too. Logs (usage, events) are read line by line, up
   to the size they had when opened, each line capped.
5. Writes open the same way (appends with O_APPEND, one write() per record)
   and refuse the same files; `open_regular` hands out such a descriptor (lock
   files, the pid file, a step's log).
6. Modes come from the umask: new files ask 0o666 and folders 0o777, the
   kernel masks them, and a setgid folder gives its group. A caller may cap a
   file's mode (a step's log and usage are never more readable than the plan).
A path beneath no registered root (the `metrics --output` file, tests of one
module) is opened beneath its own parent folder, which is followed as the
caller named it; its last component never is.

Errors: a link, a non-regular file, a hard-linked file or one over its limit
is `Refused`, a BadFile and an OSError at once: readers report it as a bad
file, writers that survive I/O errors (events, heartbeats) survive it too. A
missing file is FileNotFoundError, as from open().
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import secrets
import stat
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from modulatio_d.core.errors import BadFile

KiB = 1024
MiB = 1024 * KiB

LIMITS: dict[str, int] = {
    "plan": 1 * MiB,
    "cron entry": 1 * MiB,
    "ticket": 1 * MiB,
    "config": 1 * MiB,
    "record": 8 * MiB,      # the daemon's keys of a 1 MiB plan, as JSON (\\u escapes)
    "heartbeat": 64 * KiB,
    "lock file": 64 * KiB,  # who holds it: a line of JSON
    "pid file": 4 * KiB,
    "usage line": 64 * KiB,
    "event line": 64 * KiB,
}
"""Bytes a file of each kind may have; for `usage line` and `event line`, one line."""

_HINTS = {
    "plan": "move long text out of the plan",
    "cron entry": "move long text out of the entry, into a template plan",
    "ticket": "move long notes out of the ticket",
    "config": "keep agent options short; point to files for long ones",
    "record": "delete it: the plan file is then trusted as it stands",
    "heartbeat": "delete it: its daemon writes a new one",
}

_SYS_OPENAT2 = 437
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_CHUNK = 64 * KiB
_OPEN = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def _libc_fn(name: str):
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


_syscall = _libc_fn("syscall")
if _syscall is not None:
    _syscall.restype = ctypes.c_long
_libc_renameat2 = _libc_fn("renameat2")
if _libc_renameat2 is not None:
    _libc_renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]

USE_OPENAT2 = _syscall is not None and os.uname().sysname == "Linux"
"""False: open by the O_NOFOLLOW walk (set when openat2 says ENOSYS; tests set it)."""
EXCHANGE = _libc_renameat2 is not None
"""False once renameat2 was refused (no RENAME_EXCHANGE here: NFS, old kernels)."""
NOREPLACE = _libc_renameat2 is not None
"""False once renameat2(RENAME_NOREPLACE) was refused: write_new falls back to link."""


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
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __del__(self) -> None:
        self.close()


_roots: weakref.WeakValueDictionary[str, Root] = weakref.WeakValueDictionary()


def register(path: Path | str) -> Root:
    """The Root of a vault folder (a real path, no links in it); the caller keeps it alive."""
    key = os.path.normpath(str(path))
    root = _roots.get(key)
    if root is None:
        root = Root(key)
        _roots[key] = root
    return root


def _locate(path: Path | str) -> tuple[Root, str, bool]:
    """(root, path relative to it, whether the root is a vault's) of an absolute path."""
    p = os.path.abspath(os.fspath(path))
    best = None
    for key in list(_roots.keys()):
        if (p == key or p.startswith(key.rstrip(os.sep) + os.sep)) and \
                (best is None or len(key) > len(best)):
            best = key
    if best is not None:
        root = _roots.get(best)
        if root is not None:
            return root, os.path.relpath(p, best), True
    return Root(os.path.dirname(p)), os.path.basename(p), False


# --- opening --------------------------------------------------------------------------

def _openat2(dirfd: int, rel: str, flags: int, mode: int) -> int:
    if flags & os.O_PATH:  # openat2 takes no other flags with O_PATH (EINVAL)
        flags &= os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    how = _OpenHow(flags, mode if flags & os.O_CREAT else 0,
                   _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS)
    while True:
        fd = _syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd),
                      ctypes.c_char_p(os.fsencode(rel)), ctypes.byref(how),
                      ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))


def _walk(dirfd: int, parts: list[str], flags: int, mode: int) -> int:
    opened: list[int] = []
    try:
        for part in parts[:-1]:
            dirfd = os.open(part, os.O_PATH | os.O_DIRECTORY | _OPEN, dir_fd=dirfd)
            opened.append(dirfd)
        return os.open(parts[-1], flags | _OPEN, mode, dir_fd=dirfd)
    finally:
        for fd in opened:
            os.close(fd)


def _parts(rel: str, path: Path | str) -> list[str]:
    parts = [p for p in rel.split(os.sep) if p not in ("", ".")]
    if ".." in parts or os.path.isabs(rel):
        raise Refused(path, "leads out of the vault", "name files inside the vault",
                      errno.EXDEV)
    return parts or ["."]


def _raw_open(root: Root, rel: str, flags: int, mode: int, path: Path | str) -> int:
    global USE_OPENAT2
    parts = _parts(rel, path)
    if USE_OPENAT2:
        try:
            return _openat2(root.fd(), os.sep.join(parts), flags | _OPEN, mode)
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
            USE_OPENAT2 = False  # this kernel has none: walk from now on
    return _walk(root.fd(), parts, flags, mode)


def _explain(root: Root, rel: str, path: Path | str, err: OSError) -> OSError:
    """The Refused that says which component is a link or not a folder, else `err`."""
    if err.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV, errno.ENXIO, errno.EISDIR):
        return err
    dirfd, shown, opened = root.fd(), root.path, []
    parts = _parts(rel, path)
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
                dirfd = os.open(part, os.O_PATH | os.O_DIRECTORY | _OPEN, dir_fd=dirfd)
            except OSError:
                return err
            opened.append(dirfd)
        return err
    finally:
        for fd in opened:
            os.close(fd)


def _open(path: Path | str, flags: int, mode: int = 0o666) -> int:
    root, rel, _ = _locate(path)
    try:
        return _raw_open(root, rel, flags, mode, path)
    except Refused:
        raise
    except OSError as e:
        if e.filename is None:
            e.filename = str(path)
        raise _explain(root, rel, path, e) from None


def open_regular(path: Path | str, flags: int, *, cap: int | None = None,
                 folders: bool = False) -> int:
    """A descriptor of the regular file `path` (checked: one link, no link followed).

    `flags` as for os.open (O_CREAT makes it with 0o666 & `cap`, masked by the
    umask); `folders` makes the missing folders first. Blocking mode restored.
    """
    if folders and flags & os.O_CREAT:
        mkdirs(Path(path).parent)
    fd = _open(path, flags | os.O_NONBLOCK, 0o666 & (0o666 if cap is None else cap))
    try:
        check_regular(path, os.fstat(fd))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


# --- reading --------------------------------------------------------------------------

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


def read(path: Path | str, kind: str) -> Snapshot:
    """The whole file (a regular file within LIMITS[kind]); Refused or FileNotFoundError."""
    fd = _open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        check_regular(path, st)
        limit = LIMITS[kind]
        if st.st_size > limit:
            raise too_big(path, kind, st.st_size)
        raw = _read_upto(fd, limit + 1)
        if len(raw) > limit:
            raise too_big(path, kind)
        return Snapshot(path, raw, signature(st))
    finally:
        os.close(fd)


def lines(path: Path | str, kind: str) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line without its newline) of a log, up to its size when opened;
    a line over LIMITS[kind] comes as None, unread. FileNotFoundError, Refused."""
    cap = LIMITS[kind]
    fd = _open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        check_regular(path, st)
        left, n, buf, skipping = st.st_size, 0, b"", False
        while left > 0:
            chunk = os.read(fd, min(_CHUNK, left))
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
    fd = _open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        check_regular(path, st)
        os.lseek(fd, max(start, st.st_size - limit), os.SEEK_SET)
        return _read_upto(fd, limit)
    finally:
        os.close(fd)


def stat_of(path: Path | str) -> os.stat_result:
    """lstat beneath the root: what is at `path` itself (a link is not followed)."""
    fd = _open(path, os.O_PATH)
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


def open_folder(folder: Path | str) -> int:
    """A readable descriptor of a folder beneath its root (FileNotFoundError, Refused).

    A folder outside every vault is the caller's own path: it is followed."""
    if not _locate(folder)[2]:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return _open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK)


def check_folder(folder: Path | str) -> None:
    """Refuse a folder that is a link, lies in one, is not a folder or cannot be opened;
    a missing folder is fine."""
    try:
        os.close(open_folder(folder))
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


def entries(folder: Path | str, suffix: str = "") -> list[Entry]:
    """The names ending in `suffix` in a folder (none when it is missing), with their lstat."""
    try:
        fd = open_folder(folder)
    except FileNotFoundError:
        return []
    out = []
    base = os.fspath(folder)
    try:
        with os.scandir(fd) as it:
            for e in it:
                if not e.name.endswith(suffix):
                    continue
                try:
                    st = os.stat(e.name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # renamed away since it was listed
                out.append(Entry(e.name, os.path.join(base, e.name), st))
    finally:
        os.close(fd)
    return out


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


# --- changing folders -----------------------------------------------------------------

def folder_cap(file_mode: int) -> int:
    """The folder mode no more open than files of `file_mode`: search where read is."""
    return file_mode | ((file_mode & 0o444) >> 2)


def mkdirs(folder: Path | str, cap: int | None = None) -> None:
    """Make `folder` and the missing folders above it beneath its root: 0o777 & `cap`,
    masked by the umask (a setgid parent gives its group and its setgid bit)."""
    mode = 0o777 & (0o777 if cap is None else cap)
    root, rel, vault = _locate(folder)
    if not vault:
        os.makedirs(folder, mode, exist_ok=True)  # outside every vault: the caller's own
        return
    dirfd, opened = root.fd(), []
    shown = root.path
    try:
        for part in _parts(rel, folder):
            if part == ".":
                continue
            shown = os.path.join(shown, part)
            try:
                os.mkdir(part, mode, dir_fd=dirfd)
            except FileExistsError:
                pass
            try:
                dirfd = os.open(part, os.O_PATH | os.O_DIRECTORY | _OPEN, dir_fd=dirfd)
            except OSError as e:
                if e.errno in (errno.ENOTDIR, errno.ELOOP):
                    st = os.stat(part, dir_fd=dirfd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        raise Refused(shown, "is a symbolic link: links are never followed in "
                                      "the vault", "put the folder itself there",
                                      errno.ELOOP) from None
                    raise Refused(shown, "is not a folder", "move the file away") from None
                raise
            opened.append(dirfd)
    finally:
        for fd in opened:
            os.close(fd)


class _Folder:
    """The folder of `path`, opened beneath its root, and the name of `path` in it."""

    def __init__(self, path: Path | str, create: bool = False):
        parent = os.path.dirname(os.path.abspath(os.fspath(path)))
        if create:
            mkdirs(parent)
        self.name = os.path.basename(os.fspath(path))
        self.fd = open_folder(parent)

    def __enter__(self) -> _Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def temp(path: Path | str, data: bytes, *, like: os.stat_result | None = None,
         cap: int | None = None, sync: bool = True) -> Path:
    """A complete temp file `.<name>.<random>.tmp` beside `path`, fsynced unless not `sync`.

    Its mode: `like`'s (and owner, where allowed) when rewriting a file, else
    0o666 & `cap`, masked by the umask.
    """
    with _Folder(path) as d:
        while True:
            name = f".{d.name}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN,
                             0o600 if like is not None else 0o666 & (0o666 if cap is None else cap),
                             dir_fd=d.fd)
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
            os.close(fd)
            os.unlink(name, dir_fd=d.fd)
            raise
        os.close(fd)
    return Path(os.path.dirname(os.path.abspath(os.fspath(path))), name)


def _same_folder(a: Path | str, b: Path | str) -> None:
    if os.path.dirname(os.path.abspath(a)) != os.path.dirname(os.path.abspath(b)):
        raise ValueError(f"{a} and {b} are not in one folder")


def rename(src: Path | str, dst: Path | str) -> None:
    """Rename `src` over `dst` (one folder); a link at `dst` is replaced, never followed."""
    _same_folder(src, dst)
    with _Folder(dst) as d:
        os.rename(os.path.basename(src), d.name, src_dir_fd=d.fd, dst_dir_fd=d.fd)


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


def exchange(a: Path | str, b: Path | str) -> bool:
    """Swap two names of one folder atomically; False when this system cannot."""
    _same_folder(a, b)
    if not EXCHANGE:
        return False
    with _Folder(b) as d:
        return _renameat2(d.fd, os.path.basename(a), d.name, _RENAME_EXCHANGE)


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


def unlink(path: Path | str, missing_ok: bool = False) -> None:
    """Remove the name `path` (a link is removed, not followed)."""
    try:
        with _Folder(path) as d:
            os.unlink(d.name, dir_fd=d.fd)
    except FileNotFoundError:
        if not missing_ok:
            raise


def fsync_dir(folder: Path | str) -> None:
    fd = open_folder(folder)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- writing --------------------------------------------------------------------------

def append(path: Path | str, data: bytes, *, cap: int | None = None, sync: bool = False,
           folders: bool = True) -> None:
    """Append `data` with one write() (O_APPEND: records of several writers never mix)."""
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, cap=cap, folders=folders)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def mode_of(path: Path | str) -> int | None:
    """The permission bits of the regular file at `path` (None when it is not there)."""
    try:
        st = stat_of(path)
    except (FileNotFoundError, Refused):
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None

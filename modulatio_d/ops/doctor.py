"""`modulatio doctor`: is the filesystem under this vault safe for the daemons, and for
daemons on several hosts? Each check returns rows (check, verdict, detail, hint); the
exit code is the worst verdict: 0 ok, 1 works with caveats, 2 unsafe.

Every probe file lives in <vault>/.modulatio/doctor/ and is named `<run>.<what>`, where
<run> is `<host>-<pid>`; a run removes its own files when it ends, and removes files
older than an hour that a killed run left. Lock checks use two real processes: this one
and a child (`python -c`) that holds the lock until its stdin closes.

`--peer`: modulatio_d/ops/doctor_peer.py.

The trust checks of who may write what are to be appended to TRUST_CHECKS.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import grp
import os
import pwd
import re
import select
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modulatio_d.core.filesystems import (
    FsClass,
    Mount,
    Tier,
    Verdict,
    classify,
    client_cache_seconds,
    mount_for,
    parse_mountinfo,
    sync_folder_class,
    sync_marker,
)
from modulatio_d.store import fs
from modulatio_d.store.vault import Vault

FOLDER = "doctor"
LEFTOVER_S = 3600.0
STEP_S = 20.0
"""The longest wait for one step of the peer protocol (a round trip on a slow cache)."""
TAKEOVER_S = 10.0
CLOCK_S = 2.0
SPACE_UNSAFE, SPACE_CAVEAT = 16 * 2**20, 256 * 2**20
INODES_UNSAFE, INODES_CAVEAT = 100, 10_000


@dataclass(frozen=True)
class Row:
    check: str
    verdict: Verdict
    detail: str
    hint: str = ""
    data: dict[str, object] = field(default_factory=dict)
    """What was measured, for scripts (`--json`): times in ms, sizes in bytes."""


@dataclass
class Probe:
    """What the checks share: the vault, who runs, where the probe files go, the mount."""

    vault: Vault
    host: str
    run: str
    folder: Path | None
    """<vault>/.modulatio/doctor, or None when it could not be made."""
    mount: Mount | None
    fs: FsClass | None
    sync: FsClass | None = None
    notes: dict[str, object] = field(default_factory=dict)

    def own(self, what: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{self.run}.{what}"


Check = Callable[[Probe], list[Row]]


@dataclass
class Report:
    vault: Path
    host: str
    rows: list[Row]

    @property
    def verdict(self) -> Verdict:
        return max((r.verdict for r in self.rows), default=Verdict.OK)

    @property
    def exit_code(self) -> int:
        return int(self.verdict)

    def as_json(self) -> dict:
        return {"vault": str(self.vault), "host": self.host, "verdict": self.verdict.word,
                "exit_code": self.exit_code,
                "checks": [{"check": r.check, "verdict": r.verdict.word, "detail": r.detail,
                            "hint": r.hint, "data": r.data} for r in self.rows]}


# --- running ---------------------------------------------------------------------------


def run(vault: Vault, peer: bool = False, peer_wait: float = 30.0,
        mountinfo: str | None = None) -> Report:
    host = socket.gethostname()
    safe_host = re.sub(r"[^A-Za-z0-9_-]", "_", host) or "host"
    probe = Probe(vault, host, f"{safe_host}-{os.getpid()}", None, None, None)
    probe.folder = _make_folder(vault)
    probe.mount, probe.fs = _mount(vault.root, mountinfo)
    probe.sync = _sync_folder(vault.root)
    rows: list[Row] = []
    try:
        checks = [*CHECKS, *TRUST_CHECKS]
        if peer:
            from modulatio_d.ops.doctor_peer import peer_checks  # only --peer needs it

            def check_peer(probe: Probe) -> list[Row]:
                return peer_checks(probe, peer_wait)

            checks.append(check_peer)
        for check in checks:
            try:
                rows += check(probe)
            except OSError as e:  # one check that cannot run does not hide the others
                name = check.__name__.removeprefix("check_").replace("_", " ")
                where = f"{e.filename}: " if e.filename else ""
                rows.append(Row(name, Verdict.CAVEAT, f"could not run: {where}"
                                f"{e.strerror or e}"))
    finally:
        if probe.folder is not None:
            _remove_own(probe)
    return Report(vault.root, host, rows)


def _make_folder(vault: Vault) -> Path | None:
    folder = vault.meta / FOLDER
    try:
        fs.mkdirs(folder)  # never a link: leftovers are removed from it below
    except OSError:
        return None
    if not os.access(folder, os.W_OK | os.X_OK):  # made by another user, say
        return None
    _remove_leftovers(folder)
    return folder


def _remove_leftovers(folder: Path) -> None:
    now = time.time()
    try:
        entries = fs.entries(folder)
    except OSError:
        return
    for entry in entries:
        try:
            if now - entry.stat().st_mtime > LEFTOVER_S:
                fs.unlink(entry.path)
        except OSError:
            pass


def _remove_own(probe: Probe) -> None:
    assert probe.folder is not None
    try:
        names = fs.names(probe.folder)
    except OSError:
        return
    for name in names:
        if name.startswith(probe.run + ".") and not (
                probe.notes.get("keep_done") and name == f"{probe.run}.done"):
            try:
                fs.unlink(probe.folder / name)
            except OSError:
                pass


def _mount(root: Path, mountinfo: str | None) -> tuple[Mount | None, FsClass | None]:
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None, None
    m = mount_for(parse_mountinfo(mountinfo), str(root))
    return m, (classify(m) if m else None)


def _sync_folder(root: Path) -> FsClass | None:
    for folder in (root, *root.parents):
        try:
            client = sync_marker(os.listdir(folder))
        except OSError:
            continue
        if client:
            return sync_folder_class(client, str(folder))
    return None


def no_folder(check: str, probe: Probe) -> list[Row]:
    folder = probe.vault.meta / FOLDER
    return [Row(check, Verdict.CAVEAT, f"not run: this user cannot make or write {folder}",
                f"run doctor as the daemons' user, or remove {folder} if another user made it")]


# --- the checks on one host --------------------------------------------------------------


def check_filesystem(probe: Probe) -> list[Row]:
    rows = []
    m, fs = probe.mount, probe.fs
    if m is None or fs is None:
        rows.append(Row("filesystem", Verdict.CAVEAT,
                        "unknown: /proc/self/mountinfo is not readable here",
                        "run `modulatio doctor --peer` on two hosts before sharing the vault"))
    else:
        rows.append(Row("filesystem", fs.verdict,
                        f"{fs.name}: {m.source} on {m.point}; {fs.why}", fs.hint))
    if probe.sync is not None:
        rows.append(Row("sync folder", Verdict.UNSAFE, probe.sync.why, probe.sync.hint))
    else:
        rows.append(Row("sync folder", Verdict.OK, "no marker of Syncthing, Dropbox or "
                        "Nextcloud in the vault or the folders above it"))
    return rows


def check_mount_options(probe: Probe) -> list[Row]:
    m, fs = probe.mount, probe.fs
    if m is None or fs is None:
        return []
    if fs.tier is Tier.LOCAL:
        return [Row("mount options", Verdict.OK, "a local mount: no cache options matter")]
    if m.fstype in ("fuse.glusterfs", "fuse.juicefs"):
        return [_fuse_cache_row(m)]
    if m.fstype in ("nfs", "nfs4"):
        return [_nfs_cache_row(m)]
    return [Row("mount options", Verdict.OK, f"{','.join(m.options)}: none that doctor judges")]


def _fuse_cache_row(m: Mount) -> Row:
    argv = _client_argv(m)
    if argv is None:
        return Row("mount options", Verdict.CAVEAT,
                   f"the {m.fstype} client process of {m.point} is not visible from here, so "
                   "its cache timeouts are unknown", _cache_hint(m.fstype))
    found = client_cache_seconds(m.fstype, argv)
    shown = ", ".join(f"{k}={'default (1 s)' if v is None else f'{v:g}'}"
                      for k, v in found.items())
    if all(v == 0 for v in found.values()):
        return Row("mount options", Verdict.OK,
                   f"{shown}: the kernel keeps no names or attributes of other hosts' files")
    return Row("mount options", Verdict.CAVEAT,
               f"{shown}: stat() of a file another host changed can answer from the kernel's "
               "cache until it expires (on the test bed: up to 0.75 s with 1 s, 0.1 s with 0)",
               _cache_hint(m.fstype))


def _cache_hint(fstype: str) -> str:
    if fstype == "fuse.glusterfs":
        return "mount with -o attribute-timeout=0,entry-timeout=0"
    return "mount with --attr-cache=0 --entry-cache=0 --dir-entry-cache=0"


def _client_argv(m: Mount) -> list[str] | None:
    """The command line of the FUSE client serving `m`: its process, found in /proc."""
    program = m.fstype.removeprefix("fuse.")
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and os.path.basename(argv[0]).startswith(program) and (
                m.point in argv or m.point.rstrip("/") in argv):
            return argv
    return None


def _nfs_cache_row(m: Mount) -> Row:
    acdirmax = m.option("acdirmax") or m.option("actimeo")
    if m.option("noac") is not None or (acdirmax or "").isdigit() and int(acdirmax) <= 1:
        return Row("mount options", Verdict.OK,
                   "attribute caches of 1 s or less: another host's new plan is listed soon")
    shown = f"acdirmax={acdirmax}" if acdirmax else "acdirmax not set (60 s by default)"
    return Row("mount options", Verdict.CAVEAT,
               f"{shown}: a folder listing can lag another host's new files that long",
               "mount with actimeo=1 (or noac)")


def check_locks(probe: Probe) -> list[Row]:
    if probe.folder is None:
        return no_folder("flock", probe) + no_folder("posix locks", probe)
    return [_exclusion(probe, "flock"), _exclusion(probe, "posix")]


_HOLDER = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
try:
    if sys.argv[2] == "flock":
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError as e:
    print("error", e.strerror, flush=True)
    sys.exit(1)
print("held", flush=True)
sys.stdin.read()
"""


def try_lock(fd: int, kind: str) -> bool:
    """Take the lock without waiting: True taken, False held elsewhere; other errors raise."""
    try:
        if kind == "flock":
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def _unlock(fd: int, kind: str) -> None:
    if kind == "flock":
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)


def take_within(path: Path, kind: str, seconds: float) -> float | None:
    """Seconds until the lock on `path` could be taken (then dropped), None if not in time."""
    fd = fs.open_regular(path, os.O_RDWR)
    try:
        start = time.monotonic()
        while not try_lock(fd, kind):
            if time.monotonic() - start > seconds:
                return None
            time.sleep(0.002)
        _unlock(fd, kind)
        return time.monotonic() - start
    finally:
        os.close(fd)


def _exclusion(probe: Probe, kind: str) -> Row:
    name = "flock" if kind == "flock" else "posix locks"
    what = "flock" if kind == "flock" else "a POSIX lock (lockf)"
    path = probe.own(kind)
    child = subprocess.Popen([sys.executable, "-I", "-S", "-c", _HOLDER, str(path), kind],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        ready, _, _ = select.select([child.stdout], [], [], 10.0)
        said = child.stdout.readline().strip() if ready else "no answer in 10 s"
        if said != "held":
            return Row(name, Verdict.UNSAFE,
                       f"{what} on {path} cannot be taken: {said.removeprefix('error ')}",
                       "the daemons cannot claim plans here; use another filesystem")
        try:
            blocked = take_within(path, kind, 0) is None
        except OSError as e:
            return Row(name, Verdict.UNSAFE, f"{what} fails in a second process: {e.strerror}",
                       "the daemons cannot claim plans here; use another filesystem")
        if not blocked:
            unsafe = kind == "flock"
            return Row(name, Verdict.UNSAFE if unsafe else Verdict.CAVEAT,
                       f"{what} held by one process did not stop a second one: it does not "
                       "exclude on this filesystem" + ("" if unsafe else "; the daemons use "
                                                       "flock, but a step that uses lockf is "
                                                       "not protected"),
                       "use another filesystem" if unsafe else "")
        child.stdin.close()
        child.wait(10)
        took = take_within(path, kind, 5.0)
        if took is None:
            return Row(name, Verdict.CAVEAT, f"{what} excludes, but was not free 5 s after "
                       "its holder ended", "a plan would wait that long after a daemon died")
        scope = ("between two processes of this host" if probe.fs is None
                 or probe.fs.tier is Tier.LOCAL else
                 "between two processes of this host (across hosts: `--peer`)")
        return Row(name, Verdict.OK, f"{what} excludes {scope}; free again "
                   f"{took * 1000:.0f} ms after its holder ended",
                   data={"takeover_ms": round(took * 1000, 1)})
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        for pipe in (child.stdin, child.stdout, child.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()


def check_inotify(probe: Probe) -> list[Row]:
    if probe.folder is None:
        return no_folder("inotify", probe)
    try:
        watch = Inotify(probe.folder)
    except OSError as e:
        return [Row("inotify", Verdict.CAVEAT, f"no inotify watch on {probe.folder}: "
                    f"{e.strerror}", "daemons find new work only at each tick (--tick-seconds)")]
    with watch:
        start = time.monotonic()
        write_atomic(probe.own("inotify"), b"x")
        seen = None
        while seen is None and time.monotonic() - start < 2.0:
            if any(n.startswith(probe.run + ".") for n in watch.names(0.05)):
                seen = time.monotonic() - start
    if seen is None:
        return [Row("inotify", Verdict.CAVEAT, "inotify reported no event for a file written "
                    "here within 2 s", "daemons find new work only at each tick")]
    local = f"inotify saw a file written here after {seen * 1000:.1f} ms"
    data: dict[str, object] = {"latency_ms": round(seen * 1000, 1)}
    if probe.fs is not None and not probe.fs.other_hosts_invisible_to_inotify:
        return [Row("inotify", Verdict.OK, f"{local}; one host, so that is every change",
                    data=data)]
    return [Row("inotify", Verdict.CAVEAT,
                f"{local}, but it never reports changes made on other hosts: a daemon here "
                "sees a plan approved on another host only at its next tick (--tick-seconds)",
                "keep --tick-seconds short on every host (polling pickup: not yet, "
                "see docs/multi-host.md)", data)]


def check_staleness(probe: Probe) -> list[Row]:
    if probe.folder is None:
        return no_folder("cache staleness", probe)
    path = probe.own("fresh")
    write_atomic(path, b"1")
    read_retrying(path)
    start = time.monotonic()
    write_atomic(path, b"2")
    lag = None
    while time.monotonic() - start < 5.0:
        if read_retrying(path) == b"2":
            lag = time.monotonic() - start
            break
        time.sleep(0.001)
    if lag is None:
        return [Row("cache staleness", Verdict.UNSAFE, "a file replaced here still read as "
                    "its old version through a new open() 5 s later",
                    "the daemons would act on old state; use another filesystem")]
    here = f"a file replaced here read fresh through a new open() after {lag * 1000:.1f} ms"
    data: dict[str, object] = {"reread_ms": round(lag * 1000, 1)}
    if probe.fs is not None and probe.fs.tier is Tier.LOCAL:
        return [Row("cache staleness", Verdict.OK, here, data=data)]
    hint = "measure it with `modulatio doctor --peer` on two hosts"
    if probe.mount is not None and probe.mount.fstype == "fuse.glusterfs":
        hint = ("set the volume's performance.stat-prefetch and performance.open-behind off "
                "(on the test bed: up to 1 s stale before, under 0.05 s after); " + hint)
    return [Row("cache staleness", Verdict.CAVEAT,
                f"{here}; another host may read it up to about 1 s late from its client "
                "caches (not measured from one host)", hint, data)]


def check_clock(probe: Probe) -> list[Row]:
    if probe.folder is None:
        return no_folder("clock offset", probe)
    path = probe.own("clock")
    before = time.time()
    write_atomic(path, b"t")
    after = time.time()
    mtime = fs.stat_of(path).st_mtime
    offset = round(mtime - (before + after) / 2, 3) + 0.0  # + 0.0: no "-0.000"
    where = ("the file server's clock" if probe.fs is not None and probe.fs.tier is not
             Tier.LOCAL else "file times")
    text = f"{where} and this host's differ by {offset:+.3f} s (a file's mtime just written)"
    data: dict[str, object] = {"offset_s": offset}
    if abs(offset) <= CLOCK_S:
        return [Row("clock offset", Verdict.OK, text, data=data)]
    return [Row("clock offset", Verdict.CAVEAT, text + ": cron fires, heartbeat ages and "
                "durations read from files will be off by that much",
                "run NTP (chrony, systemd-timesyncd) on every host and on the file server",
                data)]


def check_permissions(probe: Probe) -> list[Row]:
    root, meta = probe.vault.root, probe.vault.meta
    parts, worst, hint = [], Verdict.OK, ""
    for path in (root, meta):
        try:
            st = os.stat(path)
        except OSError as e:
            return [Row("permissions", Verdict.UNSAFE, f"{path}: {e.strerror}")]
        parts.append(f"{path.name or path}/ {stat.filemode(st.st_mode)} "
                     f"{_user(st.st_uid)}:{_group(st.st_gid)}")
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            worst = Verdict.CAVEAT
            hint = f"chmod o-w {path}"
            parts[-1] += " (anyone on the machine may write here, and plans run commands)"
    writable = all(os.access(p, os.W_OK) for p in (root, meta)) and probe.folder is not None
    who = _user(os.geteuid())
    if not writable:
        return [Row("permissions", Verdict.UNSAFE,
                    f"{who} cannot write {root} and {meta}: a daemon run as {who} could not "
                    f"record progress; " + ", ".join(parts),
                    "run doctor (and the daemons) as the service user, or fix the modes "
                    "(docs/security.md)")]
    return [Row("permissions", worst, f"writable by {who}; " + ", ".join(parts), hint)]


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def judge_space(avail: int, total: int) -> tuple[Verdict, str]:
    text = f"{_size(avail)} free of {_size(total)}"
    if avail < SPACE_UNSAFE:
        return Verdict.UNSAFE, text + ": writes of progress may fail now"
    if avail < SPACE_CAVEAT:
        return Verdict.CAVEAT, text + ": little room for step logs and usage records"
    return Verdict.OK, text


def judge_inodes(free: int, total: int) -> tuple[Verdict, str]:
    if total == 0:
        return Verdict.OK, "no fixed number of inodes (allocated as needed)"
    text = f"{free:,} inodes free of {total:,}"
    if free < INODES_UNSAFE:
        return Verdict.UNSAFE, text + ": new files (temp files of every save) may fail now"
    if free < INODES_CAVEAT:
        return Verdict.CAVEAT, text + ": few left for new files"
    return Verdict.OK, text


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def check_space(probe: Probe) -> list[Row]:
    st = os.statvfs(probe.vault.root)
    space = judge_space(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)
    inodes = judge_inodes(st.f_favail, st.f_files)
    hint = "free some space, or move the vault"
    return [Row("free space", space[0], space[1], hint if space[0] else "",
                {"avail_bytes": st.f_bavail * st.f_frsize,
                 "total_bytes": st.f_blocks * st.f_frsize}),
            Row("inodes", inodes[0], inodes[1], hint if inodes[0] else "",
                {"free": st.f_favail, "total": st.f_files})]


CHECKS: list[Check] = [check_filesystem, check_mount_options, check_locks, check_inotify,
                       check_staleness, check_clock, check_permissions, check_space]

TRUST_CHECKS: list[Check] = []
"""Checks of who may write what in the vault (plans run commands): each takes the Probe
and returns rows, run after CHECKS. Empty until those checks are written."""


# --- files and inotify ---------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    fs.rename(fs.temp(path, data, sync=False), path)


_RETRIED = (errno.ESTALE, errno.EIO)


def read_retrying(path: Path, counts: dict[str, int] | None = None) -> bytes | None:
    """The file's bytes, None while it does not exist; ESTALE and EIO (a read racing a
    rename on another host) are retried, and counted."""
    for _ in range(100):
        try:
            return fs.read(path, "doctor probe").raw
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno not in _RETRIED:
                raise
            if counts is not None:
                counts[errno.errorcode[e.errno]] = counts.get(errno.errorcode[e.errno], 0) + 1
            time.sleep(0.001)
    return None


_IN_MASK = 0x00000080 | 0x00000100
"""IN_MOVED_TO and IN_CREATE: what the writer of a file does (a temp file renamed into
place) and a reader of it never causes, so events for the peer's files are the peer's."""


class Inotify:
    """A bare inotify watch on one folder (ctypes: no thread, unlike watchdog)."""

    def __init__(self, folder: Path):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init, add = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError):
            raise OSError(errno.ENOSYS, "this system has no inotify") from None
        self.fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        if add(self.fd, os.fsencode(folder), _IN_MASK) < 0:
            e = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(e, os.strerror(e))

    def names(self, timeout: float) -> list[str]:
        """The names of the events that arrive within `timeout` s (maybe none)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        try:
            buf = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        out, off = [], 0
        while off + 16 <= len(buf):
            _wd, _mask, _cookie, size = struct.unpack_from("iIII", buf, off)
            out.append(buf[off + 16: off + 16 + size].rstrip(b"\0").decode(errors="replace"))
            off += 16 + size
        return out

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

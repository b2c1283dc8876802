"""Which filesystem a vault lives on, and what that means for the daemons: pure, no I/O.

The input is the text of /proc/self/mountinfo (proc(5)): one line per mount,
`id parent major:minor root point options [optional fields...] - fstype source super-options`,
with blanks, tabs, newlines and backslashes in paths written as octal escapes
(`\\040`). The mount of a path is the entry with the longest mount point that
contains it; the later of two entries with the same mount point is the one on top.

A mount is put in one of four tiers:
  LOCAL    one host's own disk (or memory): flock is exact, inotify sees every change.
  SHARED   a filesystem whose locks cross hosts (GlusterFS, JuiceFS, CephFS, NFS with
           locking, SMB with byte-range locks): the daemons work across hosts, with the
           caveats named in `why` (inotify blind to other hosts, caches).
  REFUSED  locks that do not cross hosts (NFS nolock/local_lock, sshfs, object-store
           mounts) or a file-sync folder: two hosts would run the same plan.
  UNKNOWN  anything else: it may work; `modulatio doctor --peer` measures it.
Sync folders (Dropbox, Syncthing, ...) are local disks to the kernel; they are
recognised by the marker files their clients leave, see `sync_marker`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass


class Verdict(enum.IntEnum):
    """One line of `doctor`; the exit code is the worst verdict."""

    OK = 0
    """Safe as far as this check can tell."""
    CAVEAT = 1
    """Works, with a limit the operator must know (named in the line)."""
    UNSAFE = 2
    """Do not run daemons here: plans could run twice or progress be lost."""

    @property
    def word(self) -> str:
        return self.name.lower()


class Tier(enum.Enum):
    LOCAL = "local"
    SHARED = "shared"
    REFUSED = "refused"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    source: str
    options: tuple[str, ...]
    """The per-mount options and the filesystem's own (super) options, in that order."""
    root: str = "/"

    def option(self, name: str) -> str | None:
        """The value of `name=value` (the last one wins), '' for a bare flag, None if absent."""
        found = None
        for opt in self.options:
            key, sep, value = opt.partition("=")
            if key == name:
                found = value if sep else ""
        return found


@dataclass(frozen=True)
class FsClass:
    tier: Tier
    name: str
    """What it is, for people: 'GlusterFS (FUSE client)'."""
    verdict: Verdict
    why: str
    hint: str = ""

    @property
    def other_hosts_invisible_to_inotify(self) -> bool:
        """inotify reports only changes made through this host's kernel: on any
        filesystem that other hosts write to, their changes raise no event."""
        return self.tier is not Tier.LOCAL


_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Every well-formed line of a mountinfo file, in order; malformed lines are skipped
    (the kernel writes none, but a test or a future field must not crash doctor)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            dash = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < dash + 3:
            continue
        mount_opts = fields[5].split(",")
        super_opts = fields[dash + 3].split(",") if len(fields) > dash + 3 else []
        mounts.append(Mount(point=_unescape(fields[4]), fstype=fields[dash + 1],
                            source=_unescape(fields[dash + 2]),
                            options=tuple(o for o in (*mount_opts, *super_opts) if o),
                            root=_unescape(fields[3])))
    return mounts


def mount_for(mounts: Iterable[Mount], path: str) -> Mount | None:
    """The mount holding `path` (absolute, links already resolved)."""
    best: Mount | None = None
    for m in mounts:
        point = m.point.rstrip("/") or "/"
        inside = path == point or point == "/" or path.startswith(point + "/")
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = m
    return best


LOCAL_DISKS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "bcachefs", "jfs",
               "reiserfs", "nilfs2", "overlay", "vfat", "exfat", "ntfs", "ntfs3", "fuseblk",
               "hfsplus", "apfs", "ufs"}
IN_MEMORY = {"tmpfs", "ramfs"}

_SHARED_FUSE = {
    "fuse.glusterfs": "GlusterFS (FUSE client)",
    "fuse.juicefs": "JuiceFS",
    "fuse.ceph-fuse": "CephFS (ceph-fuse)",
    "fuse.ceph": "CephFS (ceph-fuse)",
}
_SHARED_CAVEATS = ("inotify here never sees another host's changes, and another host's "
                   "write can be read up to about a second late (client caches)")
_NO_LOCKS_FUSE = {
    "fuse.sshfs": "sshfs",
    "fuse.rclone": "an rclone mount",
    "fuse.s3fs": "an s3fs mount",
    "fuse.goofys": "a goofys mount",
    "fuse.mountpoint-s3": "a Mountpoint for S3 mount",
    "fuse.gcsfuse": "a gcsfuse mount",
}


def nfs_version(m: Mount) -> tuple[int, int] | None:
    raw = m.option("vers") or m.option("nfsvers")
    if raw is None:
        return (4, 0) if m.fstype == "nfs4" else None
    major, _, minor = raw.partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return None


def classify(m: Mount) -> FsClass:
    t = m.fstype
    if t in LOCAL_DISKS:
        return FsClass(Tier.LOCAL, f"{t} (a local disk)", Verdict.OK,
                       "one host's own disk: flock is exact and inotify sees every change "
                       "(daemons of other hosts cannot share it)")
    if t in IN_MEMORY:
        return FsClass(Tier.LOCAL, f"{t} (memory)", Verdict.CAVEAT,
                       "one host's memory: locks and inotify are exact, but the vault is "
                       "lost when the machine restarts",
                       "keep vaults on a disk; tmpfs is for tests")
    if t in _SHARED_FUSE:
        return FsClass(Tier.SHARED, _SHARED_FUSE[t], Verdict.CAVEAT,
                       f"shared: flock and POSIX locks cross hosts; {_SHARED_CAVEATS}",
                       "see docs/multi-host.md for the recommended options")
    if t == "ceph":
        return FsClass(Tier.SHARED, "CephFS (kernel client)", Verdict.CAVEAT,
                       "shared: flock and POSIX locks cross hosts; inotify here never sees "
                       "another host's changes", "see docs/multi-host.md")
    if t in ("nfs", "nfs4"):
        return _classify_nfs(m)
    if t in ("cifs", "smb3"):
        if m.option("nobrl") is not None:
            return FsClass(Tier.REFUSED, f"SMB ({t}) with nobrl", Verdict.UNSAFE,
                           "nobrl keeps locks on this host: two hosts would run the same plan",
                           "remount without nobrl")
        return FsClass(Tier.SHARED, f"SMB ({t})", Verdict.CAVEAT,
                       "shared: flock becomes an SMB byte-range lock (Linux 5.5 and later) "
                       "that crosses hosts only if the server enforces it; inotify here "
                       "never sees another host's changes",
                       "run `modulatio doctor --peer` on two hosts to see the locks cross")
    if t in _NO_LOCKS_FUSE:
        return FsClass(Tier.REFUSED, _NO_LOCKS_FUSE[t], Verdict.UNSAFE,
                       "it carries no locks to the server: flock excludes only on this host, "
                       "so two hosts would run the same plan",
                       "use one host, or a filesystem from docs/multi-host.md")
    if t.startswith("fuse"):
        return FsClass(Tier.UNKNOWN, f"{t} (a FUSE filesystem doctor does not know)",
                       Verdict.CAVEAT, "whether its locks cross hosts is unknown",
                       "run `modulatio doctor --peer` on two hosts before relying on it")
    return FsClass(Tier.UNKNOWN, f"{t} (not a filesystem doctor knows)", Verdict.CAVEAT,
                   "whether its locks cross hosts is unknown",
                   "run `modulatio doctor --peer` on two hosts before relying on it")


def _classify_nfs(m: Mount) -> FsClass:
    vers = nfs_version(m)
    label = f"NFSv{vers[0]}.{vers[1]}" if vers else "NFS"
    local_lock = m.option("local_lock")
    if m.option("nolock") is not None or local_lock in ("all", "flock"):
        which = "nolock" if m.option("nolock") is not None else f"local_lock={local_lock}"
        return FsClass(Tier.REFUSED, f"{label} with {which}", Verdict.UNSAFE,
                       f"{which} keeps flock on this host: two hosts would run the same plan",
                       "remount with locking (no nolock, local_lock=none)")
    notes = ["shared: flock becomes a lock on the server and crosses hosts",
             "inotify here never sees another host's changes"]
    if local_lock == "posix":
        notes.append("local_lock=posix keeps POSIX (lockf) locks on this host: a step that "
                     "uses lockf is not protected across hosts")
    if vers is not None and vers < (4, 1):
        notes.append(f"NFS {vers[0]}.{vers[1]} keeps locks less reliably than 4.1+ "
                     "(v3: lockd, lost on a server restart; 4.0: no sessions)")
    if m.option("soft") is not None or m.option("softerr") is not None:
        notes.append("a soft mount can turn a slow server into I/O errors mid-write")
    return FsClass(Tier.SHARED, label, Verdict.CAVEAT, "; ".join(notes),
                   "mount with vers=4.2,hard (see docs/multi-host.md)")


# Files that file-sync clients leave in the folders they sync: such a folder is copied
# between machines after the fact, and locks never travel with it.
_SYNC_MARKERS = {
    ".stfolder": "Syncthing",
    ".dropbox": "Dropbox",
    ".dropbox.cache": "Dropbox",
    ".dropbox.attr": "Dropbox",
    ".owncloudsync.log": "Nextcloud/ownCloud",
}
_SYNC_PATTERNS = (
    (re.compile(r"\.?_?sync_[0-9a-f]+\.db"), "Nextcloud/ownCloud"),
)


def sync_marker(names: Iterable[str]) -> str | None:
    """The sync client a folder's entries reveal (None when none)."""
    for name in names:
        if name in _SYNC_MARKERS:
            return f"{_SYNC_MARKERS[name]} ({name})"
        for pattern, client in _SYNC_PATTERNS:
            if pattern.fullmatch(name):
                return f"{client} ({name})"
    return None


def sync_folder_class(client: str, where: str) -> FsClass:
    return FsClass(Tier.REFUSED, f"a {client.split(' ')[0]} folder", Verdict.UNSAFE,
                   f"{where} is synced by {client}: files are copied between machines after "
                   "the fact and locks never travel, so two hosts would run the same plan",
                   "keep the vault out of synced folders; share it with a filesystem from "
                   "docs/multi-host.md, or run daemons on one host only")


def client_cache_seconds(fstype: str, argv: list[str]) -> dict[str, float | None]:
    """The kernel cache timeouts a FUSE client was started with ({} for a type doctor does
    not know); None where the argument is absent (the client's default applies).

    GlusterFS: --attribute-timeout, --entry-timeout (default 1 s each).
    JuiceFS: --attr-cache, --entry-cache, --dir-entry-cache (default 1 s each).
    """
    names = {"fuse.glusterfs": ("attribute-timeout", "entry-timeout"),
             "fuse.juicefs": ("attr-cache", "entry-cache", "dir-entry-cache")}.get(fstype)
    if names is None:
        return {}
    found: dict[str, float | None] = dict.fromkeys(names)
    it = iter(range(len(argv)))
    for i in it:
        arg = argv[i]
        for name in names:
            value = None
            if arg.startswith(f"--{name}="):
                value = arg.split("=", 1)[1]
            elif arg == f"--{name}" and i + 1 < len(argv):
                value = argv[i + 1]
                next(it, None)
            if value is not None:
                try:
                    found[name] = float(value)
                except ValueError:
                    pass
    return found

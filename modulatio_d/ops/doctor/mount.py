"""The checks of the mount under the vault: which filesystem it is (classified by
core/filesystems.py from /proc/self/mountinfo), whether a sync client shares the folder,
and the client cache options that decide how late another host's changes are seen.
"""

from __future__ import annotations

import os
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
from modulatio_d.ops.doctor.probe import Probe
from modulatio_d.ops.doctor.report import Row


def find_mount(root: Path, mountinfo: str | None) -> tuple[Mount | None, FsClass | None]:
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None, None
    m = mount_for(parse_mountinfo(mountinfo), str(root))
    return m, (classify(m) if m else None)


def find_sync_folder(root: Path) -> FsClass | None:
    for folder in (root, *root.parents):
        try:
            client = sync_marker(os.listdir(folder))
        except OSError:
            continue
        if client:
            return sync_folder_class(client, str(folder))
    return None


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

"""`modulatio doctor`: is the filesystem under this vault safe for the daemons, and for
daemons on several hosts? Each check returns rows (check, verdict, detail, hint); the
exit code is the worst verdict: 0 ok, 1 works with caveats, 2 unsafe (report.py).

A run: make Vault.doctor_dir (or run without it: the checks that need it say so), read
the mount, then run CHECKS, TRUST_CHECKS and, with `--peer`, the peer protocol, in that
order, each check given the same Probe (probe.py). Every probe file is named
`<run>.<what>`, where <run> is `<host>-<pid>`; a run removes its own files when it ends,
and removes files older than LEFTOVER_S that a killed run left.

The checks, one module per subject: mount.py (filesystem, sync folder, mount options),
locks.py (flock and POSIX locks between two processes), freshness.py (inotify, cache
staleness, clock offset), permissions.py, space.py (free space, inodes); peer.py for
`--peer`.

TRUST_CHECKS: trust.py, would a daemon start here (store/trust.py's checks of the
vault, the folders above it, .modulatio/ and the config)?
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

from modulatio_d.core.filesystems import Verdict
from modulatio_d.ops.doctor.freshness import check_clock, check_inotify, check_staleness
from modulatio_d.ops.doctor.locks import check_locks
from modulatio_d.ops.doctor.mount import (
    check_filesystem,
    check_mount_options,
    find_mount,
    find_sync_folder,
)
from modulatio_d.ops.doctor.peer import peer_checks
from modulatio_d.ops.doctor.permissions import check_permissions
from modulatio_d.ops.doctor.probe import Check, Probe
from modulatio_d.ops.doctor.report import Report, Row
from modulatio_d.ops.doctor.space import check_space
from modulatio_d.ops.doctor.trust import check_trust
from modulatio_d.store import fs
from modulatio_d.store.vault import Vault

LEFTOVER_S = 3600.0

CHECKS: list[Check] = [check_filesystem, check_mount_options, check_locks, check_inotify,
                       check_staleness, check_clock, check_permissions, check_space]

TRUST_CHECKS: list[Check] = [check_trust]
"""Checks of who may write what in the vault (plans run commands): each takes the Probe
and returns rows, run after CHECKS."""


def run(vault: Vault, peer: bool = False, peer_wait: float = 30.0,
        mountinfo: str | None = None) -> Report:
    host = socket.gethostname()
    safe_host = re.sub(r"[^A-Za-z0-9_-]", "_", host) or "host"
    probe = Probe(vault, host, f"{safe_host}-{os.getpid()}", None, None, None)
    probe.folder = _make_folder(vault)
    probe.mount, probe.fs = find_mount(vault.root, mountinfo)
    probe.sync = find_sync_folder(vault.root)
    rows: list[Row] = []
    try:
        checks = [*CHECKS, *TRUST_CHECKS]
        if peer:
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
    folder = vault.doctor_dir
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

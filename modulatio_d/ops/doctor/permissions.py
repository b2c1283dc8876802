"""The check of who may write the vault: this user must (a daemon run as this user records
progress there), and not anyone on the machine (plans run commands).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

from modulatio_d.core.filesystems import Verdict
from modulatio_d.ops.doctor.probe import Probe
from modulatio_d.ops.doctor.report import Row


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

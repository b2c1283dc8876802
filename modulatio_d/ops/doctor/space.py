"""The check of room left on the vault's filesystem: free bytes and free inodes (every save
makes a temp file), judged by thresholds below which writes of progress may fail.
"""

from __future__ import annotations

import os

from modulatio_d.core.filesystems import Verdict
from modulatio_d.ops.doctor.probe import Probe
from modulatio_d.ops.doctor.report import Row

SPACE_UNSAFE, SPACE_CAVEAT = 16 * 2**20, 256 * 2**20
INODES_UNSAFE, INODES_CAVEAT = 100, 10_000


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

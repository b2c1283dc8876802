"""Whether the benchmarks' folder is on an ext4 without a journal, where a file's
creation grows dearer after removals (docs/benchmarks.md, "the disk's memory of
removed files"): the benchmarks that create files say so beside their figures."""

from __future__ import annotations

import os


def creation_note(folder: str) -> str | None:
    """One line to print when `folder` is on an ext4 without a journal, else None."""
    dev = os.stat(folder).st_dev
    want = f"{os.major(dev)}:{os.minor(dev)}"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[2] != want:
                continue
            kind = fields[fields.index("-") + 1]
            source = os.path.basename(fields[fields.index("-") + 2])
            if kind == "ext4" and not os.path.exists(f"/proc/fs/jbd2/{source}-8"):
                return (f"note: {folder} is on ext4 without a journal ({source}): a file "
                        "created there looks past every inode removed in the last 1-5 "
                        "minutes, so run this after 5 minutes without mass removals "
                        "(a test run's or another benchmark's clean-up)")
            return None
    return None

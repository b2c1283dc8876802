"""Which filesystem a vault path is on: /proc/self/mountinfo read, core/filesystems.py judges.

`shared_kind(path)` names the filesystem when other hosts may change files under
`path` unseen by this kernel (any tier but LOCAL): the daemon then polls
(daemon/poll.py) and appends flush before letting their flock go (store/events.py).
None on a local disk, and when mountinfo cannot be read.
"""

from __future__ import annotations

import os
from pathlib import Path

from modulatio_d.core import filesystems

MOUNTINFO = Path("/proc/self/mountinfo")


def shared_kind(path: Path | str, mountinfo: Path = MOUNTINFO) -> str | None:
    """What `path` is on when inotify cannot see other hosts' changes there, else None."""
    try:
        mounts = filesystems.parse_mountinfo(mountinfo.read_text())
    except OSError:
        return None
    mount = filesystems.mount_for(mounts, os.path.realpath(path))
    if mount is None:
        return None
    kind = filesystems.classify(mount)
    return kind.name if kind.other_hosts_invisible_to_inotify else None

"""Whether a process of this host still runs: the one pid-liveness check.

Used for heartbeats (a heartbeat whose daemon is gone is stale) and by
`modulatio stop` and `ps` (ops/detach.py). A pid is only meaningful on the host
that wrote it; callers check the host first. A zombie (exited, not yet reaped
by its parent) counts as gone: it runs nothing any more. A pid we may not
signal (another user's process) counts as running: it exists.
"""

from __future__ import annotations

import os


def gone(pid: int) -> bool:
    """True when `pid` no longer runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The state follows the command name, which is in parentheses.
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False

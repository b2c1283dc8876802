"""Temp files left behind by a killed writer: found by their exact names, removed once old.

Every file this program writes goes through a temp file beside it, renamed into
place once complete. A process killed in between leaves the temp file behind:
- `.<name>.<8 characters>.tmp` (store/fs/ temp, for store/atomic.py and
  store/heartbeat.py): beside plans, cron entries and tickets (`<name>` ends in
  `.md`) in a project's plans/, cron/ and tickets/, beside the records in
  `.modulatio/state/<PROJECT>/` and the crash counts in its `crashes/`, and the
  heartbeats in `.modulatio/daemons/` (`.json`);
- `.<host>.<pid>.json.tmp` in `.modulatio/daemons/`, left by versions before that.
`sweep` removes, in those folders only, the files whose name has exactly one of
these forms for that folder and whose mtime is older than MAX_AGE_S: a live
writer keeps its temp file for milliseconds. Anything else (a person's `.swp`, a
file named otherwise, a folder, a link) is never touched. The daemon sweeps at
start and every SWEEP_EVERY_S (daemon/loop.py).
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from modulatio_d.store import fs
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.tempfiles")
MAX_AGE_S = 300.0
SWEEP_EVERY_S = 600.0

# mkstemp's names: 8 characters of "abcdefghijklmnopqrstuvwxyz0123456789_".
_ATOMIC_MD = re.compile(r"\A\.[^/]+\.md\.[a-z0-9_]{8}\.tmp\Z")
_ATOMIC_JSON = re.compile(r"\A\.[^/]+\.json\.[a-z0-9_]{8}\.tmp\Z")
_HEARTBEAT = re.compile(r"\A\.[^/]+\.\d+\.json\.tmp\Z")


def folders(vault: Vault, projects: Iterable[str]) -> list[tuple[Path, tuple[re.Pattern, ...]]]:
    """The folders written through temp files, each with the temp names it may hold."""
    out: list[tuple[Path, tuple[re.Pattern, ...]]] = [
        (vault.daemons_dir, (_HEARTBEAT, _ATOMIC_JSON))]
    for project in projects:
        for kind in ("plans", "cron", "tickets"):
            out.append((vault.project_dir(project) / kind, (_ATOMIC_MD,)))
        out.append((vault.records_dir(project), (_ATOMIC_JSON,)))
        out.append((vault.records_dir(project) / "crashes", (_ATOMIC_JSON,)))  # daemon/guard
    return out


def sweep(vault: Vault, projects: Iterable[str], now: float,
          max_age_s: float = MAX_AGE_S) -> list[Path]:
    """Remove the temp files older than `max_age_s` (at `now`, a time.time()); the removed."""
    removed = []
    for folder, patterns in folders(vault, projects):
        try:
            names = fs.names(folder)  # never through a link (store/fs/); names only: a
            # plans/ folder of 10,000 files is not stat()ed for the few temp files in it
        except OSError:  # missing, unreadable or a link: nothing of ours to sweep there
            continue
        for name in names:
            if not name.endswith(".tmp") or not any(p.match(name) for p in patterns):
                continue
            path = os.path.join(folder, name)
            try:
                st = fs.stat_of(path)
                if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < max_age_s:
                    continue
                fs.unlink(path)
            except FileNotFoundError:
                continue  # its writer renamed it, or another daemon swept it
            except OSError as err:
                log.warning("cannot remove the leftover temp file %s: %s", path, err)
                continue
            log.info("removed %s: a temp file left by a killed writer, %.0f s old", path,
                     now - st.st_mtime)
            removed.append(Path(path))
    return removed

"""The daemons' refusals that still stand, for `status` and `metrics` (ops/survey.py): each
`file_refused` line of events.jsonl whose file is there, unchanged since the refusal."""

from __future__ import annotations

import os

from modulatio_d.core.times import parse_time
from modulatio_d.store import fs
from modulatio_d.store.events import read as read_events
from modulatio_d.store.vault import Vault


def daemon_refusals(vault: Vault, refused: dict, events: list[dict] | None = None) -> None:
    """Add the daemons' refusals that still stand: the file is there, unchanged since."""
    if events is None:
        events = read_events(vault.events_path, ("file_refused",))
    latest: dict[str, dict] = {}
    for e in events:
        rel = e.get("path")
        if not isinstance(rel, str):
            continue
        latest[os.path.join(vault.root, rel)] = e  # an absolute path stays as it is
    for path, e in latest.items():
        path = os.path.normpath(path)
        if path in refused:
            continue  # judged by this pass itself, which is fresher
        ts = parse_time(e.get("ts"))
        try:
            st = fs.stat_of(path)
        except OSError:
            continue  # deleted or renamed since: nothing to report
        # The event's time is cut to the second; the scan judges a file only 2 s
        # after its last change, so an unchanged file is older than the event.
        if ts is None or st.st_mtime >= ts.timestamp() + 1:
            continue  # changed since the refusal: the next scan judges it again
        if "mode" in e and [e.get("uid"), e.get("gid"), e.get("mode")] != \
                [st.st_uid, st.st_gid, st.st_mode]:
            continue  # refused by the trust checks, and chmod/chown/chgrp'ed since
        kind = e.get("kind") or ("plan" if f"{os.sep}plans{os.sep}" in path else "file")
        refused[path] = {"path": os.path.relpath(path, vault.root), "project": e.get("project"),
                         "kind": kind, "line": e.get("line"), "reason": e.get("reason"),
                         "source": "daemon", "refused_at": e.get("ts")}

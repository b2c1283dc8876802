"""`modulatio workers` and `modulatio ps`: the pool's size per host, and what runs.

`workers N` writes the host's size file (store/pool.py); the supervisor of that
host notices within a second (daemon/pool.py). `workers` alone shows the size
stored for each host and what each live supervisor runs.

`ps` joins the daemons' heartbeats (ops/detach.py `ps`) with the supervisors'
state files: a worker's row names its pool and slot, each pool has a row of its
own. The queue counts come from the plans' status lines (ops/survey.py);
`waiting_for_slot` and `paused_by_pause` are null until the vault has slots and
pauses to count (docs/cli.md, `ps`).
"""

from __future__ import annotations

import re
import socket
from datetime import datetime

from modulatio_d.core.times import parse_time
from modulatio_d.store import pool
from modulatio_d.store.vault import Vault


def sizes(vault: Vault) -> list[dict]:
    """Every host's stored size: host, file, size (None) and error (None)."""
    from modulatio_d.core.errors import BadFile
    from modulatio_d.store import fs

    out = []
    try:
        files = fs.entries(vault.meta / pool.FOLDER, ".yaml")
    except OSError:
        files = []
    for entry in sorted(files, key=lambda e: e.name):
        host = entry.name[:-len(".yaml")]
        row: dict = {"host": host, "file": str(entry.path), "size": None, "error": None}
        try:
            row["size"] = pool.read_size(vault, host)
        except (BadFile, OSError) as e:
            row["error"] = str(e)
        out.append(row)
    return out


def show(vault: Vault, now: datetime) -> dict:
    here = socket.gethostname()
    stored = sizes(vault)
    mine = next((s for s in stored if s["host"] == here), None)
    return {"host": here, "stored": mine["size"] if mine else None,
            "error": mine["error"] if mine else None, "hosts": stored,
            "pools": [_pool_row(p, now) for p in pool.read_states(vault)]}


def set_size(vault: Vault, n: int, host: str | None = None) -> str:
    if host is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}", host):
        from modulatio_d.core.errors import UsageError
        raise UsageError(f"--host {host!r} is not a host name (letters, digits, `.`, `_`, "
                         f"`-`; as `hostname` prints it)")
    return str(pool.write_size(vault, pool.check_size(n), host))


def _pool_row(p: dict, now: datetime) -> dict:
    started = parse_time(p.get("started_at")) if isinstance(p.get("started_at"), str) else None
    workers = p.get("workers") if isinstance(p.get("workers"), list) else []
    return {"pid": p.get("pid"), "host": p.get("host"), "size": p.get("size"),
            "source": p.get("source"), "started_at": p.get("started_at"),
            "uptime_s": round((now - started).total_seconds(), 3) if started else None,
            "running": sum(1 for w in workers if w.get("state") == "running"),
            "draining": sum(1 for w in workers if w.get("state") == "draining"),
            "workers": workers}


def ps(vault: Vault, now: datetime) -> dict:
    """{daemons: [...], pools: [...], queue: {...}}: what `ps --json` prints."""
    from modulatio_d.ops import detach, survey

    s = survey.survey(vault, now, cron=False, events=[])
    rows = detach.ps(vault, s.daemons)
    pools = [_pool_row(p, now) for p in pool.read_states(vault)]
    members = {(p["host"], w.get("pid")): (p, w) for p in pools for w in p["workers"]}
    info = detach.running(vault, 0.2)
    for p in pools:
        p["detached"] = bool(info and info.pid == p["pid"] and info.host in ("", p["host"]))
    pool_pids = {(p["host"], p["pid"]) for p in pools}
    rows = [r for r in rows if not (r.get("starting") and (r["host"], r["pid"]) in pool_pids)]
    for r in rows:
        p, w = members.get((r["host"], r["pid"]), (None, None))
        r["pool"] = p["pid"] if p else None
        r["slot"] = w.get("slot") if w else None
        r["worker_state"] = w.get("state") if w else None
    return {"daemons": rows, "pools": pools, "queue": queue_counts(s)}


def queue_counts(s) -> dict:
    """The plans by where they are in the queue. `waiting_for_slot` and
    `paused_by_pause` come from the survey's `control` part (capacity slots and the
    pause file) where this version has one, else they are None (not known)."""
    by_status = s.counts()["by_status"]
    out = {"approved": by_status.get("approved", 0),
           "executing": by_status.get("executing", 0),
           "paused_plans": by_status.get("paused", 0),
           "waiting_for_slot": None, "paused_by_pause": None}
    control = getattr(s, "control", None)
    if not isinstance(control, dict) or not control:
        return out
    if isinstance(control.get("waiting_for_slot"), list):
        out["waiting_for_slot"] = len(control["waiting_for_slot"])
    pause = control.get("pause")
    if isinstance(pause, dict) and not pause.get("unreadable"):
        held = set(pause.get("projects") or {})
        out["paused_by_pause"] = sum(
            1 for row in s.plans if row.get("status") == "approved"
            and (pause.get("vault") or row.get("project") in held))
    return out

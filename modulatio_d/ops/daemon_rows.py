"""The daemons of a vault as `status` and `metrics` show them (ops/survey.py): each
heartbeat file, live or stale, and why."""

from __future__ import annotations

import socket
from datetime import datetime

from modulatio_d.core.times import parse_time
from modulatio_d.store import heartbeat
from modulatio_d.store.vault import Vault


def stale_after(tick_seconds: float | None) -> float:
    """Seconds without a heartbeat after which a daemon counts as stale.

    A daemon beats every tick and, during a step, every min(15 s, tick / 2);
    three ticks (at least a minute) forgives a slow scan or a busy disk.
    """
    try:
        tick = float(tick_seconds or 30.0)
    except (TypeError, ValueError):
        tick = 30.0
    return max(60.0, 3 * tick)


def daemons(vault: Vault, now: datetime) -> list[dict]:
    """Every heartbeat with `state` (live | stale), `reason`, `uptime_s`; freshest first."""
    this_host = socket.gethostname()
    out = []
    for beat in heartbeat.read_all(vault.daemons_dir, now):
        limit = stale_after(beat.get("tick_seconds"))
        started = parse_time(beat.get("started_at"))
        row = {k: beat.get(k) for k in ("host", "pid", "started_at", "last_tick", "age_s",
                                        "active_plan", "step", "tick_seconds", "version",
                                        "uid", "user", "paused", "waiting_for_slot")}
        row["local"] = beat.get("host") == this_host
        row["uptime_s"] = round((now - started).total_seconds(), 3) if started else None
        row["file"] = beat.get("file")
        if not beat["live"]:
            row["state"], row["reason"] = "stale", "process gone: the daemon died"
        elif beat["age_s"] > limit:
            row["state"] = "stale"
            row["reason"] = (f"no heartbeat for {beat['age_s']:.0f}s (more than {limit:.0f}s): "
                             "hung, or its host is down" if row["local"] else
                             f"no heartbeat for {beat['age_s']:.0f}s (more than {limit:.0f}s)")
        else:
            row["state"], row["reason"] = "live", None
        out.append(row)
    return out

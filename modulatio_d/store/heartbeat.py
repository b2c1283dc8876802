"""Heartbeats: liveness for people and monitors, never for mutual exclusion.

Each daemon rewrites `.modulatio/daemons/<host>.<pid>.json` every tick and
during long steps (last_tick, active_plan, step, pid, host, started_at,
tick_seconds, version, the user it runs as: uid, user; `paused` and
`waiting_for_slot` when so, daemon/admission.py) and removes it
on a clean stop. A file whose pid is gone on this host is stale (a crashed
daemon); on another host only its age tells. Reading imports nothing heavy:
`modulatio heartbeat` runs every few seconds under monitors.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import socket
from datetime import datetime
from pathlib import Path

from modulatio_d.core.times import format_time, parse_time, utcnow
from modulatio_d.store import fs, processes


class Heartbeat:
    def __init__(self, daemons_dir: Path, tick_seconds: float, version: str,
                 started_at: datetime):
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.path = daemons_dir / f"{self.host}.{self.pid}.json"
        uid = os.geteuid()
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        self.fields = {"pid": self.pid, "host": self.host,
                       "started_at": format_time(started_at, micro=True),
                       "tick_seconds": tick_seconds, "version": version,
                       "uid": uid, "user": user}

    def beat(self, now: datetime, active_plan: str | None = None, step: object = None,
             **more: object) -> None:
        """Write the beat; `more` adds what the loop tells (paused, waiting_for_slot)."""
        # Rename without fsync: a heartbeat lost in a power cut is rewritten within a tick.
        data = json.dumps({**self.fields, "last_tick": format_time(now, micro=True),
                           "active_plan": active_plan, "step": step, **more}).encode()
        try:
            with fs.Folder(self.path, create=True) as d:  # one walk for temp and rename
                fs.rename(fs.temp(self.path, data, sync=False, folder=d), self.path, d)
        except OSError as e:  # disk full: monitors will see the beat go stale, as they should
            logging.getLogger("modulatio.heartbeat").warning("heartbeat not written: %s", e)

    def remove(self) -> None:
        try:
            fs.unlink(self.path, missing_ok=True)
        except OSError as e:  # a linked folder: nothing of ours is there
            logging.getLogger("modulatio.heartbeat").warning("heartbeat not removed: %s", e)


def _alive(info: dict) -> bool:
    if info.get("host") != socket.gethostname():
        return True  # cannot tell from here: its age decides
    pid = info.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int):
        return True  # no pid to ask about: its age decides
    return not processes.gone(pid)  # a number no process can have is gone


def read_all(daemons_dir: Path, now: datetime | None = None) -> list[dict]:
    """Every heartbeat, with `age_s` (since last_tick) and `live` added; freshest first."""
    now = now or utcnow()
    out = []
    try:
        files = fs.entries(daemons_dir, ".json")
    except OSError:  # a link or not a folder: no heartbeat is read through it
        return []
    for entry in files:
        if entry.name.startswith("."):
            continue
        try:
            info = json.loads(fs.read(entry.path, "heartbeat").raw)
            last = parse_time(info["last_tick"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            continue
        if last is None:
            continue
        info["age_s"] = round((now - last).total_seconds(), 3)
        info["live"] = _alive(info)
        info["file"] = entry.path
        out.append(info)
    return sorted(out, key=lambda i: i["age_s"])


def read_one(daemons_dir: Path, host: str, pid: int) -> dict | None:
    """The heartbeat of daemon `pid` on `host`, with `last_tick` parsed; None if unreadable."""
    try:
        info = json.loads(fs.read(daemons_dir / f"{host}.{pid}.json", "heartbeat").raw)
        info["last_tick"] = parse_time(info["last_tick"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if isinstance(info, dict) and info["last_tick"] is not None else None


def prune_dead(daemons_dir: Path) -> list[str]:
    """Remove the heartbeats of this host's daemons whose process is gone (crashed)."""
    removed = []
    for info in read_all(daemons_dir):
        if info.get("host") == socket.gethostname() and not info["live"]:
            try:
                fs.unlink(info["file"])
                removed.append(info["file"])
            except OSError:
                pass  # gone already, or its folder is a link: nothing to remove
    return removed


def freshest(daemons_dir: Path, now: datetime | None = None) -> dict | None:
    live = [i for i in read_all(daemons_dir, now) if i["live"]]
    return live[0] if live else None

"""The worker pool's files: its size per host, and what each supervisor runs.

    .modulatio/pool/<host>.yaml           `workers: N` (written by `modulatio workers N`,
                                          or by a person); read by the supervisor of
                                          that host at least every POLL_S
    .modulatio/daemons/<host>.<pid>.pool  the supervisor's state, JSON: pid, host,
                                          started_at, size, last_update, workers
                                          [{pid, slot, state, restarts}]; rewritten
                                          on every change, removed on a clean exit

The size file is the operator's: a size stored for a host outlives the
supervisor (a restart keeps a resize) and wins over `daemon --workers N`, which
is the size only while none is stored. A size that is malformed, negative or
over MAX_WORKERS is a BadFile naming file:line; the supervisor keeps the size it
had (never "unlimited", never 0 by accident). The state file ends in `.pool`,
not `.json`, so readers of heartbeats never take a supervisor for a daemon.
"""

from __future__ import annotations

import json
import os
import re
import socket
from datetime import datetime
from pathlib import Path

from modulatio_d.core.errors import BadFile
from modulatio_d.core.times import format_time
from modulatio_d.store import atomic, fs, processes
from modulatio_d.store.vault import Vault, decode

MAX_WORKERS = 64
"""A pool size over this is refused as absurd: each worker is a process running a plan."""
POLL_S = 0.5
"""How often a supervisor looks at its size file (the issue asks: within a second)."""
FOLDER = "pool"
STATE_SUFFIX = ".pool"
_LINE = re.compile(r"^workers\s*:\s*(\S+)\s*(?:#.*)?$")


def size_path(vault: Vault, host: str | None = None) -> Path:
    return vault.meta / FOLDER / f"{host or socket.gethostname()}.yaml"


def check_size(value: object, where: str = "the pool size") -> int:
    """`value` as a pool size; ValueError naming the limits otherwise."""
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f"{where} must be a whole number of workers from 0 to "
                         f"{MAX_WORKERS}, not {text!r}")
    n = int(text)
    if n < 0 or n > MAX_WORKERS:
        raise ValueError(f"{where} must be from 0 to {MAX_WORKERS} workers, not {n}")
    return n


def parse_size(path: Path, text: str) -> int:
    """The `workers: N` of a size file (comments and blank lines allowed); BadFile."""
    found: tuple[int, int] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _LINE.match(stripped)
        if m is None:
            raise BadFile(path, f"expected `workers: N`, found {stripped[:60]!r}", number,
                          "write one line `workers: N`, or set it with `modulatio workers N`")
        if found is not None:
            raise BadFile(path, f"`workers` is given twice (first on line {found[1]})", number)
        try:
            found = (check_size(m.group(1), "`workers`"), number)
        except ValueError as e:
            raise BadFile(path, str(e), number,
                          "set it with `modulatio workers N`") from None
    if found is None:
        raise BadFile(path, "no `workers: N` line", None,
                      "write one, or remove the file to use `daemon --workers N`")
    return found[0]


def read_size(vault: Vault, host: str | None = None) -> int | None:
    """The size stored for `host` (this host), None when none is; BadFile when bad."""
    path = size_path(vault, host)
    try:
        raw = fs.read(path, "config").raw
    except FileNotFoundError:
        return None
    return parse_size(path, decode(path, raw))


def signature(vault: Vault, host: str | None = None) -> tuple | None:
    """The size file's stat signature (None when missing): read it again when it moves."""
    try:
        st = fs.stat_of(size_path(vault, host))
    except FileNotFoundError:
        return None
    except OSError as e:
        return ("unusable", str(e))
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def write_size(vault: Vault, n: int, host: str | None = None) -> Path:
    path = size_path(vault, host)
    fs.mkdirs(path.parent)
    atomic.replace(path, (f"# the worker pool size of this host: `modulatio workers N` sets "
                          f"it\nworkers: {check_size(n)}\n").encode())
    return path


# --- the supervisor's state ----------------------------------------------------------------

def state_path(vault: Vault, pid: int | None = None) -> Path:
    return vault.daemons_dir / f"{socket.gethostname()}.{pid or os.getpid()}{STATE_SUFFIX}"


def write_state(path: Path, state: dict, now: datetime) -> None:
    data = json.dumps({**state, "last_update": format_time(now, micro=True)}).encode()
    fs.mkdirs(path.parent)
    fs.rename(fs.temp(path, data, sync=False), path)


def remove_state(path: Path) -> None:
    try:
        fs.unlink(path, missing_ok=True)
    except OSError:
        pass  # a linked folder: nothing of ours is there


def read_states(vault: Vault) -> list[dict]:
    """Every supervisor's state whose process runs (on this host; others by trust)."""
    out = []
    try:
        files = fs.entries(vault.daemons_dir, STATE_SUFFIX)
    except OSError:
        return []
    here = socket.gethostname()
    for entry in files:
        try:
            info = json.loads(fs.read(entry.path, "heartbeat").raw)
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            continue
        if not isinstance(info, dict):
            continue
        if info.get("host") == here and processes.gone(pid):
            continue  # a supervisor killed outright: its file is stale
        out.append(info)
    return sorted(out, key=lambda i: (str(i.get("host")), i["pid"]))

"""Running a daemon without systemd: `daemon --detach`, `stop`, `ps`.

Files, beside the vault's other state:
    .modulatio/daemon.pid   "<pid>\\n<host>\\n", flock'ed (LOCK_EX) for as long as the
                            detached daemon runs; never deleted
    .modulatio/daemon.log   the detached daemon's stderr (its log), appended to; or the
                            file `daemon --detach --log-file PATH` names
    .modulatio/daemon.json  what was started, for people and scripts: pid, host, vault,
                            version, started_at, log (its path), workers (a pool's size
                            or null), argv; written by the starter once the pid is known,
                            never deleted: it describes the running daemon only while
                            the pid file is locked (`ps --json` says so as `running`)
Both are opened through store/fs/: never through a link, and refused unless they
are regular files with one link (a planted link is never truncated or written).

Protocol of `start`:
1. Open the pid file and take flock(LOCK_EX | LOCK_NB). Busy means a detached
   daemon runs: report the pid written in the file and start nothing. Probes
   (`running`) take LOCK_SH for microseconds, so a busy lock is tried again
   for half a second before it counts as a running daemon.
2. Empty the file (ftruncate, only now that the lock is ours: it is opened
   without O_TRUNC), then start `python -P -m modulatio_d daemon --vault V ...` with
   subprocess: a new session (setsid: no controlling terminal, not in the
   shell's process group, so ^C and hang-ups of the terminal do not reach it),
   stdin from /dev/null, stdout and stderr appended to the log, the locked pid
   file descriptor passed on (pass_fds). The lock belongs to the open file
   description, which the child now shares: it stays held until the daemon
   exits, however it exits, and dies with it (SIGKILL included). No fork of
   this interpreter, no multiprocessing: the child is a fresh process that
   inherits nothing but that one descriptor and its three standard streams.
   Steps never inherit the pid file (Python's descriptors are close-on-exec
   and steps are started with close_fds), so a step outliving its daemon does
   not make the daemon look alive.
3. Write the child's pid and this host into the file and close this copy.
4. Wait until the child's heartbeat appears (its first scan is done), or it
   exits (its log tail is the error), or a deadline passes (it is reported as
   starting).
The child is not forked twice: it leads its session and never opens a
terminal, and steps (in process groups of their own inside that session)
cannot take one as the session's controlling terminal.

Only the pid file's lock says whether the detached daemon runs. Stopping it
(and the other daemons of the vault on this host) is ops/stopping.py.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from modulatio_d.store import fs, processes
from modulatio_d.store.lock import flock_until
from modulatio_d.store.vault import Vault

PID_FILE = "daemon.pid"
LOG_FILE = "daemon.log"
INFO_FILE = "daemon.json"
LOCK_RETRY_S = 0.5
POLL_S = 0.02


def pid_path(vault: Vault) -> Path:
    return vault.meta / PID_FILE


def log_path(vault: Vault, chosen: Path | None = None) -> Path:
    """The detached daemon's log: `chosen` (--log-file), else .modulatio/daemon.log."""
    return Path(os.path.abspath(chosen)) if chosen else vault.meta / LOG_FILE


def info_path(vault: Vault) -> Path:
    return vault.meta / INFO_FILE


def read_info(vault: Vault) -> dict | None:
    """daemon.json with `running` (its pid file locked by that pid) added; None if unreadable."""
    import json

    try:
        info = json.loads(fs.read(info_path(vault), "heartbeat").raw)
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(info, dict):
        return None
    now = running(vault, 0.2)
    info["running"] = bool(now and now.pid == info.get("pid"))
    return info


def _write_info(vault: Vault, pid: int, log: Path, daemon_args: list[str]) -> None:
    import json

    from modulatio_d import __version__
    from modulatio_d.core.times import format_time, utcnow

    workers = None
    if "--workers" in daemon_args:
        workers = int(daemon_args[daemon_args.index("--workers") + 1])
    data = json.dumps({"pid": pid, "host": socket.gethostname(), "vault": str(vault.root),
                       "version": __version__, "started_at": format_time(utcnow(), micro=True),
                       "log": str(log), "workers": workers, "argv": daemon_args}, indent=2)
    try:
        fs.rename(fs.temp(info_path(vault), data.encode() + b"\n", sync=False),
                  info_path(vault))
    except OSError:
        pass  # the pid file says what runs; this file only describes it


@dataclass(frozen=True)
class Detached:
    pid: int
    host: str


@dataclass(frozen=True)
class Started:
    pid: int
    already: bool
    """True when a detached daemon was running already (nothing was started)."""
    ready: bool
    """True when its heartbeat appeared (its first scan is done)."""
    exit_code: int | None = None
    """Set when the new daemon exited during start-up."""
    log_tail: str = ""


def _read(fd: int) -> Detached | None:
    data = os.pread(fd, 4096, 0).decode("utf-8", "replace").split()
    pid = processes.as_pid(int(data[0])) if data and data[0].isascii() \
        and data[0].isdigit() and len(data[0]) < 12 else None
    return Detached(pid, data[1] if len(data) > 1 else "") if pid else None


def _held(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def locked(vault: Vault) -> bool:
    """Whether the pid file is locked: the detached daemon runs (or is being started)."""
    try:
        fd = fs.open_regular(pid_path(vault), os.O_RDONLY)
    except (FileNotFoundError, fs.Refused):
        return False  # a link or a FIFO is no pid file a daemon of ours holds
    try:
        return _held(fd)
    finally:
        fs.close(fd)


def running(vault: Vault, wait_s: float = 2.0) -> Detached | None:
    """The detached daemon of this vault while its pid file is locked, else None."""
    try:
        fd = fs.open_regular(pid_path(vault), os.O_RDONLY)
    except (FileNotFoundError, fs.Refused):
        return None
    try:
        if not _held(fd):
            return None
        # Held. The starter empties the file before it starts the daemon and
        # writes the pid right after: wait out that moment.
        deadline = time.monotonic() + wait_s
        while True:
            info = _read(fd)
            if info is not None or time.monotonic() > deadline:
                return info
            time.sleep(POLL_S)
    finally:
        fs.close(fd)


def start(vault: Vault, daemon_args: list[str], environ: dict[str, str],
          python: str = sys.executable, wait_s: float = 30.0,
          log_file: Path | None = None) -> Started:
    """Start `modulatio daemon --vault V <daemon_args>` in the background (see the protocol)."""
    log_file = log_file or log_path(vault)
    from modulatio_d.daemon.sdnotify import NOTIFY_ENV_VARS

    fd = fs.open_regular(pid_path(vault), os.O_RDWR | os.O_CREAT, folders=True)
    try:
        if not flock_until(fd, time.monotonic() + LOCK_RETRY_S, poll_s=POLL_S):
            info = running(vault)
            return Started(info.pid if info else 0, already=True, ready=True)
        os.ftruncate(fd, 0)
        log = fs.open_regular(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            offset = os.fstat(log).st_size
            os.write(log, f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} modulatio daemon "
                          f"--detach on {socket.gethostname()}: {' '.join(daemon_args)}\n"
                          .encode())
            # Not systemd's child: its notify socket and watchdog are not ours to use.
            env = {k: v for k, v in environ.items() if k not in NOTIFY_ENV_VARS}
            # -P: the working folder (the vault, which people write) is not put on
            # sys.path, so a folder named like a module there cannot replace one.
            proc = subprocess.Popen(
                [python, "-P", "-m", "modulatio_d", "daemon", "--vault", str(vault.root),
                 *daemon_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=vault.root, env=env,
                start_new_session=True, pass_fds=(fd,))
        finally:
            fs.close(log)
        os.pwrite(fd, f"{proc.pid}\n{socket.gethostname()}\n".encode(), 0)
    finally:
        fs.close(fd)  # the daemon's copy of the descriptor keeps the lock
    _write_info(vault, proc.pid, log_file, daemon_args)
    # A pool's supervisor writes no heartbeat: its state file says it is up.
    ending = ".pool" if "--workers" in daemon_args else ".json"
    beat = vault.daemons_dir / f"{socket.gethostname()}.{proc.pid}{ending}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return Started(proc.pid, already=False, ready=False, exit_code=code,
                           log_tail=_tail(log_file, offset))
        if _exists(beat):
            return Started(proc.pid, already=False, ready=True)
        time.sleep(POLL_S)
    return Started(proc.pid, already=False, ready=False)


def _exists(path: Path) -> bool:
    try:
        return fs.exists(path)
    except OSError:
        return False  # its folder is a link: the daemon refuses it and exits


def _tail(path: Path, offset: int, limit: int = 4000) -> str:
    try:
        return fs.tail(path, limit, start=offset).decode("utf-8", "replace")
    except OSError:
        return ""


# --- listing ------------------------------------------------------------------------------

def ps(vault: Vault, daemons: list[dict]) -> list[dict]:
    """The running daemons of the vault: live heartbeats, and the detached daemon
    while it starts (before its first heartbeat). `daemons` is survey.daemons()."""
    info = running(vault, 0.2)
    here = socket.gethostname()
    rows = []
    for d in daemons:
        if d["state"] != "live":
            continue
        rows.append({**{k: d.get(k) for k in ("pid", "host", "started_at", "uptime_s",
                                              "last_tick", "age_s", "active_plan", "step",
                                              "tick_seconds", "version")},
                     "detached": bool(info and info.pid == d["pid"]
                                      and info.host in ("", d["host"])),
                     "local": d["host"] == here})
    if info is not None and not any(r["detached"] for r in rows) \
            and info.host in ("", here) and not processes.gone(info.pid):
        rows.append({"pid": info.pid, "host": info.host or here, "started_at": None,
                     "uptime_s": None, "last_tick": None, "age_s": None,
                     "active_plan": None, "step": None, "tick_seconds": None,
                     "version": None, "detached": True, "local": True, "starting": True})
    return rows

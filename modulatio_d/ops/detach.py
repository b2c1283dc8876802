"""Running a daemon without systemd: `daemon --detach`, `stop`, `ps`.

Files, beside the vault's other state:
    .modulatio/daemon.pid   "<pid>\\n<host>\\n", flock'ed (LOCK_EX) for as long as the
                            detached daemon runs; never deleted
    .modulatio/daemon.log   the detached daemon's stderr (its log), appended to

Protocol of `start`:
1. Open the pid file and take flock(LOCK_EX | LOCK_NB). Busy means a detached
   daemon runs: report the pid written in the file and start nothing. Probes
   (`running`) take LOCK_SH for microseconds, so a busy lock is tried again
   for half a second before it counts as a running daemon.
2. Empty the file, then start `python -P -m modulatio_d daemon --vault V ...` with
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

Only the pid file's lock says whether the detached daemon runs; a pid is
signalled only while that lock is held (so a stale file naming a reused pid is
never acted on), only on the host written in the file (a vault may be shared
between hosts), and only when the process itself, as /proc shows it, is a
modulatio daemon serving THIS vault (its --vault, else its $MODULATIO_VAULT,
else its working folder) that started when its heartbeat says: the pid file
and the heartbeats are as writable as the rest of the vault, so a vault writer
could name another vault's daemon in them (`not_this_vaults`). The process is
pinned with a pidfd before it is checked and signalled through it, so a pid
reused meanwhile is never hit. `stop` stops the detached daemon; with
`all_here`, also every other daemon of the vault on this host that a live
heartbeat names and that passes the same check (a daemon started in a
terminal, say). Daemons run by systemd belong to systemd: stop them with
systemctl, or the unit's Restart= and the operator's picture disagree.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from modulatio_d.core.times import format_time, parse_time
from modulatio_d.store import processes
from modulatio_d.store.lock import flock_until
from modulatio_d.store.vault import Vault

PID_FILE = "daemon.pid"
LOG_FILE = "daemon.log"
LOCK_RETRY_S = 0.5
POLL_S = 0.02


def pid_path(vault: Vault) -> Path:
    return vault.meta / PID_FILE


def log_path(vault: Vault) -> Path:
    return vault.meta / LOG_FILE


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
    if not data or not data[0].isdigit():
        return None
    return Detached(int(data[0]), data[1] if len(data) > 1 else "")


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
        fd = os.open(pid_path(vault), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return _held(fd)
    finally:
        os.close(fd)


def running(vault: Vault, wait_s: float = 2.0) -> Detached | None:
    """The detached daemon of this vault while its pid file is locked, else None."""
    try:
        fd = os.open(pid_path(vault), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
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
        os.close(fd)


def start(vault: Vault, daemon_args: list[str], environ: dict[str, str],
          python: str = sys.executable, wait_s: float = 30.0) -> Started:
    """Start `modulatio daemon --vault V <daemon_args>` in the background (see the protocol)."""
    from modulatio_d.daemon.sdnotify import NOTIFY_ENV_VARS

    vault.meta.mkdir(parents=True, exist_ok=True)
    fd = os.open(pid_path(vault), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not flock_until(fd, time.monotonic() + LOCK_RETRY_S, poll_s=POLL_S):
            info = running(vault)
            return Started(info.pid if info else 0, already=True, ready=True)
        os.ftruncate(fd, 0)
        log = os.open(log_path(vault), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                      0o644)
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
            os.close(log)
        os.pwrite(fd, f"{proc.pid}\n{socket.gethostname()}\n".encode(), 0)
    finally:
        os.close(fd)  # the daemon's copy of the descriptor keeps the lock
    beat = vault.daemons_dir / f"{socket.gethostname()}.{proc.pid}.json"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return Started(proc.pid, already=False, ready=False, exit_code=code,
                           log_tail=_tail(log_path(vault), offset))
        if beat.exists():
            return Started(proc.pid, already=False, ready=True)
        time.sleep(POLL_S)
    return Started(proc.pid, already=False, ready=False)


def _tail(path: Path, offset: int, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(offset, os.fstat(f.fileno()).st_size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# --- stopping ---------------------------------------------------------------------------

def is_modulatio_daemon(pid: int) -> bool:
    """Whether `pid` runs `modulatio daemon` (so a reused pid is never signalled)."""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:  # gone, or hidden from us (hidepid): not ours to signal
            return False
    else:  # no /proc (macOS, the BSDs): ask ps
        try:
            out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                                 timeout=5, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
        argv = out.split()
    joined = b" ".join(argv)
    return b"modulatio" in joined and b"daemon" in argv


START_SLACK_S = 2.0
"""The boot time in /proc/stat is whole seconds: a process start known to about one."""
START_LAG_S = 600.0
"""A daemon writes its heartbeat's started_at once it has imported everything: seconds
after its process started, minutes on a machine thrashing. A process that started
longer before (or after) its heartbeat says is not the daemon that wrote it."""


def served_vault(pid: int) -> tuple[str | None, str]:
    """(the vault the modulatio daemon `pid` serves, resolved, "") as it found it:
    `--vault` on its command line (relative to its working folder), else its
    $MODULATIO_VAULT, else the nearest folder holding .modulatio/ at or above its
    working folder; (None, why) when that cannot be told from here."""
    args = processes.argv(pid)
    if args is None:
        return None, "its command line cannot be read"
    rest = args[args.index("daemon") + 1:] if "daemon" in args else []
    chosen = None
    for i, arg in enumerate(rest):
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if len(name) > 2 and "--vault".startswith(name):  # argparse takes --vau too
            chosen = value if eq else (rest[i + 1] if i + 1 < len(rest) else None)
    env = None
    if chosen is None:
        env = processes.environ(pid)
        if env is None:
            return None, "its environment cannot be read (run stop as the daemon's user)"
        chosen = env.get("MODULATIO_VAULT") or None
    if chosen is not None and chosen.startswith("~"):
        env = env if env is not None else processes.environ(pid)
        if env is None or not env.get("HOME"):
            return None, f"its --vault {chosen} depends on a HOME that cannot be read"
        chosen = env["HOME"] + chosen[1:] if chosen[1:2] in ("", "/") else None
        if chosen is None:
            return None, "its --vault names another user's home"
    where = processes.cwd(pid)
    if chosen is not None and not os.path.isabs(chosen):
        if where is None:
            return None, "its working folder cannot be read (run stop as the daemon's user)"
        chosen = os.path.join(where, chosen)
    if chosen is not None:
        return os.path.realpath(chosen), ""
    if where is None:
        return None, "its working folder cannot be read (run stop as the daemon's user)"
    for folder in [Path(where), *Path(where).parents]:
        if (folder / ".modulatio").is_dir():
            return os.path.realpath(folder), ""
    return None, "it names no vault"


def not_this_vaults(vault: Vault, pid: int, started_at: object = None) -> str | None:
    """Why `pid` must not be signalled as a daemon of `vault`; None when it is one.

    The pid file and the heartbeat files are as writable as the rest of the vault,
    so what they say is checked against the process itself: it must be a modulatio
    daemon, serve this vault, and (given the heartbeat's started_at) have started
    when its heartbeat says, not be a later process that got the pid again.
    """
    if not is_modulatio_daemon(pid):
        return "not a modulatio daemon"
    served, why = served_vault(pid)
    if served is None:
        return f"a modulatio daemon whose vault cannot be told: {why}"
    if served != str(vault.root):
        return f"a modulatio daemon of another vault ({served})"
    said = parse_time(started_at) if isinstance(started_at, str) else None
    began = processes.start_time(pid)
    if said is not None and began is not None and \
            not -START_SLACK_S <= said.timestamp() - began <= START_LAG_S:
        return (f"not the daemon its heartbeat describes (that one started at {started_at}, "
                f"this process {format_time(datetime.fromtimestamp(began, UTC))}): a reused "
                f"pid")
    return None


@dataclass
class Target:
    pid: int
    how: str
    """detached (the pid file) or heartbeat (a live heartbeat on this host)"""
    gone: Callable[[], bool]
    result: str = "running"
    pidfd: int | None = None
    """Pins the process that was checked: a signal through it never reaches a later
    process that got the same pid. None where the system has no pidfd."""


def _pin(vault: Vault, pid: int, how: str, started_at: object,
         gone: Callable[[], bool] | None = None) -> Target | str:
    """The target, checked and pinned; else why it is left alone."""
    try:
        fd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        return "a process that does not run"
    except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
        fd = None
    # Checked after the pidfd is open: if the pid was reused meanwhile, what is
    # checked is the process the pidfd holds, and a failed check closes it.
    why = not_this_vaults(vault, pid, started_at)
    if why is not None:
        if fd is not None:
            os.close(fd)
        return why
    return Target(pid, how, gone or (lambda: _exited(pid, fd)), pidfd=fd)


def _exited(pid: int, fd: int | None) -> bool:
    if fd is None:
        return processes.gone(pid)
    return bool(select.select([fd], [], [], 0)[0])  # a pidfd is readable once it exits


def stop(vault: Vault, timeout: float, all_here: bool = False) -> tuple[list[Target], list[dict]]:
    """SIGTERM the daemons, wait up to `timeout`, SIGKILL what still runs, wait again.

    Returns the targets, each with `result` (stopped | killed | gone | running),
    and the live daemons of the vault elsewhere that were left alone (`refused`:
    why a process named by this vault's files was not signalled).
    """
    from modulatio_d.store.heartbeat import read_all

    here = socket.gethostname()
    targets: list[Target] = []
    info = running(vault)
    left: list[dict] = []
    beats = read_all(vault.daemons_dir)
    if info is not None and info.host in ("", here):
        beat = next((b for b in beats if b.get("host") == here and b.get("pid") == info.pid),
                    {})
        pinned = _pin(vault, info.pid, "detached", beat.get("started_at"),
                      gone=lambda: not locked(vault))
        if isinstance(pinned, Target):
            targets.append(pinned)
        else:  # the pid file is writable by whoever writes the vault: trust it no further
            left.append({"pid": info.pid, "host": here, "detached": True, "refused": pinned})
    for b in beats:
        if not b.get("live") or any(t.pid == b.get("pid") for t in targets):
            continue
        pid = b.get("pid")
        if all_here and b.get("host") == here and isinstance(pid, int) \
                and not isinstance(pid, bool) and pid > 0:
            pinned = _pin(vault, pid, "heartbeat", b.get("started_at"))
            if isinstance(pinned, Target):
                targets.append(pinned)
            else:
                left.append({**b, "refused": pinned})
        else:
            left.append(b)
    if info is not None and info.host not in ("", here):
        left.append({"pid": info.pid, "host": info.host, "detached": True})
    try:
        for t in targets:
            _signal(t, signal.SIGTERM)
        _wait(targets, timeout)
        for t in targets:
            if t.result == "running":
                _signal(t, signal.SIGKILL)
                t.result = "killing"
        _wait(targets, 10.0, done="killed")
    finally:
        for t in targets:
            if t.pidfd is not None:
                os.close(t.pidfd)
                t.pidfd = None
    return targets, left


def _signal(t: Target, sig: int) -> None:
    try:
        if t.pidfd is not None:
            signal.pidfd_send_signal(t.pidfd, sig)
        else:
            os.kill(t.pid, sig)
    except ProcessLookupError:
        t.result = "gone"


def _wait(targets: list[Target], timeout: float, done: str = "stopped") -> None:
    deadline = time.monotonic() + timeout
    while True:
        for t in targets:
            if t.result in ("running", "killing") and t.gone():
                t.result = done
        if all(t.result not in ("running", "killing") for t in targets) \
                or time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    for t in targets:
        if t.result == "killing":
            t.result = "running"


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

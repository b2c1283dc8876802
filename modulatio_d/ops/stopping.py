"""`modulatio stop`: signal the daemons of THIS vault, and nothing else.

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
terminal, say), and every pool supervisor of this host (`daemon --workers`;
its workers are stopped through it, never directly, or it would restart
them). Daemons run by systemd belong to systemd: stop them with
systemctl, or the unit's Restart= and the operator's picture disagree.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from modulatio_d.core.times import format_time, parse_time
from modulatio_d.ops.detach import POLL_S, locked, running
from modulatio_d.store import processes
from modulatio_d.store.vault import Vault

is_modulatio_daemon = processes.is_modulatio_daemon


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
    """detached (the pid file), heartbeat (a live heartbeat on this host) or pool (a
    pool's supervisor on this host, from its state file)"""
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


def stop(vault: Vault, timeout: float, all_here: bool = False,
         force: bool = True) -> tuple[list[Target], list[dict]]:
    """SIGTERM the daemons, wait up to `timeout`, SIGKILL what still runs, wait again.
    Without `force`, never SIGKILL: what still runs after the timeout is `waiting`.

    Returns the targets, each with `result` (stopped | killed | gone | running | denied
    | waiting),
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
    # A pool's workers are stopped through their supervisor (which would start them
    # again otherwise): the supervisor is the target, its workers are not told apart.
    from modulatio_d.store.pool import read_states

    workers_of: dict[int, set] = {}
    for p in read_states(vault):
        if p.get("host") != here or not isinstance(p.get("pid"), int):
            continue
        workers_of[p["pid"]] = {w.get("pid") for w in p.get("workers") or []
                                if isinstance(w, dict)}
        if all_here and not any(t.pid == p["pid"] for t in targets):
            pinned = _pin(vault, p["pid"], "pool", p.get("started_at"))
            if isinstance(pinned, Target):
                targets.append(pinned)
            else:
                left.append({**p, "refused": pinned})
    pooled = set().union(*(workers_of[t.pid] for t in targets if t.pid in workers_of))
    for b in beats:
        if not b.get("live") or any(t.pid == b.get("pid") for t in targets) \
                or (b.get("host") == here and b.get("pid") in pooled):
            continue
        pid = processes.as_pid(b.get("pid"))
        if all_here and b.get("host") == here and pid is not None:
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
        if not force:
            for t in targets:
                if t.result == "running":
                    t.result = "waiting"
            return targets, left
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
    except PermissionError:  # another user's daemon: stop it as that user (or root)
        t.result = "denied"


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

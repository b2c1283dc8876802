"""Plain helpers of the end-to-end tests (the fixtures are in conftest.py): real
`modulatio` processes on a real vault in tmp_path, waits on conditions with deadlines,
no fixed sleeps.

- `DVault` (the `dvault` fixture): a vault with project P (plans/ only) and
  `tools/step.py`, the test step (records start/end with its pid in a marker file,
  waits for a go-file, fails unless a file exists, notes and shrugs off SIGTERM,
  writes usage lines).
- `Daemon` (made by the `daemons` fixture): one `modulatio daemon` process.
- vault content and probes: `write_plan`, `plan`, `events`, `marks`, `starts`,
  `settled`, `wait_ticket`, `save_like_vim`, `ticks`, `wait_ticks`, `wait_started`;
  processes: `pid_gone`, `group_members`, `vault_processes`, `modulatio`, `clean_env`;
  `cli`: the in-process CLI on a DVault.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_runner import CliResult, run_cli
from waiting import wait_for

from modulatio_d.core.plan import Plan
from modulatio_d.store import events as events_mod
from modulatio_d.store.plan_file import read_plan
from modulatio_d.store.vault import Vault

PY = sys.executable
PROJECT = "P"

STEP_TOOL = r'''
"""Test step: python -S step.py '<json options>' (see tests/e2e/helpers.py)."""
import fcntl, json, os, signal, sys, time

opts = json.loads(sys.argv[1])
e = os.environ
who = "%s %s %s %d" % (e["MODULATIO_PLAN_ID"], e["MODULATIO_STEP_INDEX"],
                       e["MODULATIO_ATTEMPT"], os.getpid())


def note(what):
    fd = os.open(opts["marker"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, ("%s %s\n" % (what, who)).encode())
    os.close(fd)


if opts.get("note_term"):  # SIGTERM is noted in the marker and otherwise shrugged off
    signal.signal(signal.SIGTERM, lambda *a: note("term"))
if opts.get("guard"):  # a second copy of this step running at the same time is caught here
    g = os.open(opts["guard"], os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(g, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        note("overlap")
note("start")
for line in opts.get("usage", []):
    with open(e["MODULATIO_USAGE_FILE"], "a") as f:
        f.write(line + "\n")
go = opts.get("go")
while go and not os.path.exists(go):
    time.sleep(0.01)
if opts.get("require") and not os.path.exists(opts["require"]):
    note("fail")
    sys.exit(3)
note("end")
sys.exit(opts.get("exit", 0))
'''


@dataclass
class DVault:
    root: Path
    vault: Vault

    @property
    def plans(self) -> Path:
        return self.root / PROJECT / "plans"

    def plan_path(self, plan_id: str) -> Path:
        return self.plans / f"{plan_id}.md"

    @property
    def tool(self) -> Path:
        return self.root / "tools" / "step.py"

    def step(self, marker: Path | str | None = None, **opts: object) -> list[str]:
        """argv of a test step: marker (default <vault>/marks), go, require, guard, ..."""
        opts["marker"] = str(marker or self.root / "marks")
        opts = {k: str(v) if isinstance(v, Path) else v for k, v in opts.items()}
        return [PY, "-S", str(self.tool), json.dumps(opts)]


# --- daemons ------------------------------------------------------------------------


class Daemon:
    def __init__(self, root: Path, args: list[str], log_path: Path, env: dict[str, str]):
        self.root = root
        self.log_path = log_path
        self.argv = [PY, "-m", "modulatio_d", "daemon", "--vault", str(root), *args]
        with open(log_path, "ab") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, env=env,
                                         start_new_session=True)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL the daemon alone (its dead man's switch kills its step) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"daemon {self.pid} still running after {timeout}s\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def json_log(self) -> list[dict]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def vault_processes(root: Path) -> list[int]:
    """Pids of live processes whose environment says MODULATIO_VAULT=<root>."""
    needle = b"\0MODULATIO_VAULT=" + os.fsencode(str(root)) + b"\0"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = b"\0" + f.read()
        except OSError:
            continue
        if needle in env and not pid_gone(int(name)):
            found.append(int(name))
    return found


def kill_vault_processes(root: Path) -> list[int]:
    killed = []
    for _ in range(20):
        pids = vault_processes(root)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    return killed


# --- vault content --------------------------------------------------------------------


def write_plan(dv: DVault, plan_id: str, steps: list, status: str = "approved",
               extra: str = "", priority: int = 50, title: str | None = None) -> Path:
    """A plan file in project P; each step is a text or a dict, written as a JSON flow map."""
    head = [f"id: {plan_id}", f"title: {title or 'Plan ' + plan_id}",
            f"status: {status}   # set by the test", f"priority: {priority}", "sub_objectives:"]
    head += ["  - " + json.dumps(s) for s in steps]
    head += [line for line in extra.splitlines() if line.strip()]
    head += ["current_index: 0", "reflection_log: []"]
    path = dv.plan_path(plan_id)
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text("---\n" + "\n".join(head) + "\n---\nThe body, people's own.\n")
    os.replace(tmp, path)
    return path


def wait_ticket(dv: DVault, plan_id: str, n: int = 1, timeout: float = 5.0) -> Path:
    """The plan's n-th ticket, once it exists (the daemon writes the pause, then the ticket)."""
    path = dv.root / PROJECT / "tickets" / f"{plan_id}-T-{n:02d}.md"
    wait_for(path.exists, timeout, f"ticket {path.name}")
    return path


def save_like_vim(path: Path, text: str) -> None:
    """An editor's save: a new file renamed over the old one."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def plan(dv: DVault, plan_id: str) -> Plan:
    """The plan as on disk now (read_plan raises if the file does not parse)."""
    return read_plan(dv.vault, dv.plan_path(plan_id)).plan


def events(dv: DVault, name: str | None = None, **match: object) -> list[dict]:
    out = events_mod.read(dv.vault.events_path)
    return [e for e in out if (name is None or e.get("event") == name)
            and all(e.get(k) == v for k, v in match.items())]


def marks(path: Path) -> list[tuple[str, str, int, int, int]]:
    """(what, plan, index, attempt, pid) of each line the test step wrote."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        what, plan_id, index, attempt, pid = line.split()
        out.append((what, plan_id, int(index), int(attempt), int(pid)))
    return out


def starts(dv: DVault, index: int) -> list[tuple[str, str, int, int, int]]:
    """The `start` marks of step `index` in the default marker file."""
    return [m for m in marks(dv.root / "marks") if m[0] == "start" and m[2] == index]


def settled(dv: DVault, plan_id: str, *statuses: str) -> Callable[[], Plan | None]:
    """A probe for wait_for: the plan once its status is one of `statuses`, nothing in flight."""
    def check() -> Plan | None:
        p = plan(dv, plan_id)
        return p if p.status.value in statuses and not p.in_flight else None
    return check


def pid_gone(pid: int) -> bool:
    """True when no such process runs (a zombie counts as gone: it holds nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids in process group `pgid`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(name))
    return out


def cli(dv: DVault, *argv: object) -> CliResult:
    """`modulatio ARGV... --vault <dv>` in this process."""
    return run_cli(*argv, "--vault", dv.root, cwd=dv.root)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would tie a child to systemd or to another vault."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "MODULATIO_VAULT")}
    env.update(extra)
    return env


def modulatio(*argv: object, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """A real `modulatio` process (python -m modulatio_d, as the console script runs)."""
    return subprocess.run([PY, "-m", "modulatio_d", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout, env=clean_env(), check=False, **kw)


def ticks(d: Daemon, dv: DVault) -> Callable[[], str | None]:
    """A probe of the daemon's heartbeat last_tick (None when it has none)."""
    import socket

    hb = dv.vault.daemons_dir / f"{socket.gethostname()}.{d.pid}.json"

    def last() -> str | None:
        try:
            return json.loads(hb.read_text())["last_tick"]
        except (OSError, ValueError, KeyError):
            return None

    return last


def wait_ticks(d: Daemon, dv: DVault, n: int, timeout: float = 10.0) -> None:
    """Wait until the daemon's heartbeat has moved on `n` times (n ticks or beats)."""
    probe = ticks(d, dv)
    seen = [probe()]

    def moved() -> bool:
        now = probe()
        if now is not None and now != seen[-1]:
            seen.append(now)
        return len(seen) > n

    wait_for(moved, timeout, f"{n} heartbeats of daemon {d.pid}", diag=d.log)


def wait_started(d: Daemon, dv: DVault, timeout: float = 10.0) -> None:
    """Wait for the daemon's `daemon_started` event: its signal handlers are in place."""
    wait_for(lambda: events(dv, "daemon_started", pid=d.pid), timeout,
             f"daemon {d.pid} started", diag=d.log)

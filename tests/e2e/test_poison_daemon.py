"""Issue 9, defects 5, 7, 8 and 9: signals, a slow reflector, a deleted lock file, leftovers.

- 5: SIGHUP (a terminal closing) kills the daemon today: exit by signal, the step
  killed through PDEATHSIG, the plan left with in_flight, no daemon_stopped. The fix
  may reload or stop as on SIGTERM; the test accepts either and checks what both
  must give: no death by signal, and the plan resumes correctly.
- 7: a reflector runs on the daemon's only thread (up to 60 s) while the units set
  WatchdogSec=60s: WATCHDOG=1 must keep coming while a slow reflector runs.
- 8: a lock file deleted while its plan runs lets a second daemon claim the plan
  as an orphan and start the same step beside the first.
- 9: temp files left by a kill are never cleaned; a completed plan keeps `claim:`;
  `daemon --project NOPE` is accepted and serves nothing.

Real daemons, real signals, a real AF_UNIX notify socket; waits are on conditions.
Tests that fail today are xfail(strict=True) naming the defect.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time

import pytest
from helpers import (
    PY,
    events,
    group_members,
    marks,
    plan,
    settled,
    starts,
    ticks,
    wait_for,
    wait_ticks,
    write_plan,
)

from modulatio_d.store.lock import is_held, lock_path

pytestmark = pytest.mark.timeout(90)
PID = "P-P-001"
ENV = {"MODULATIO_ALLOW_ROOT": "1"}  # tests run as root in CI


def defect(n: int, what: str):
    return pytest.mark.xfail(strict=True, reason=f"issue 9 defect {n}: {what}")


# --- 5: SIGHUP ------------------------------------------------------------------------------

def after_sighup(d, dvault) -> str:
    """Send SIGHUP; "exited" once the daemon is gone, or "reloaded" once its heartbeat
    has moved twice since (it lives on): a fix may do either."""
    beat = ticks(d, dvault)
    seen = [beat()]
    d.signal(signal.SIGHUP)

    def handled() -> str | None:
        if not d.alive():
            return "exited"
        now = beat()
        if now != seen[-1]:
            seen.append(now)
        return "reloaded" if len(seen) > 2 else None

    return wait_for(handled, 15, "the daemon to exit or to beat on after SIGHUP", diag=d.log)


def test_sighup_mid_step_neither_kills_the_daemon_nor_strands_the_plan(dvault, daemons):
    go = dvault.root / "go"
    write_plan(dvault, PID, [{"title": "long", "run": dvault.step(go=go)},
                             {"title": "after", "run": "true"}])
    d1 = daemons(tick=0.3, env=ENV)
    step_pid = wait_for(lambda: starts(dvault, 0), 15, "step 0 started", diag=d1.log)[0][4]
    outcome = after_sighup(d1, dvault)
    if outcome == "exited":
        code = d1.wait(10)
        assert code == 0, f"the daemon died of the signal (exit {code}):\n{d1.log()[-2000:]}"
        assert events(dvault, "daemon_stopped", pid=d1.pid)
        p = plan(dvault, PID)
        assert p.status.value == "executing" and p.in_flight and p.in_flight["index"] == 0
        assert not is_held(lock_path(dvault.plan_path(PID)))
        go.touch()
        d2 = daemons(tick=0.3, env=ENV)
        wait_for(settled(dvault, PID, "completed"), 20, "resumed and completed", diag=d2.log)
    else:
        assert group_members(step_pid) == [step_pid], "the step was killed by the reload"
        go.touch()
        wait_for(settled(dvault, PID, "completed"), 20, "completed", diag=d1.log)
        assert len(starts(dvault, 0)) == 1
        d1.signal(signal.SIGTERM)
        assert d1.wait(10) == 0


def test_sighup_while_idle_is_handled(dvault, daemons):
    d = daemons(tick=0.3, env=ENV)
    wait_ticks(d, dvault, 2)
    if after_sighup(d, dvault) == "exited":
        assert d.wait(5) == 0, d.log()[-2000:]
        assert events(dvault, "daemon_stopped", pid=d.pid)
    else:
        d.signal(signal.SIGTERM)
        assert d.wait(10) == 0


# --- 7: a slow reflector and the systemd watchdog ---------------------------------------------

SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)  # Linux; Python's socket lacks the name


class NotifySocket:
    """systemd's side of sd_notify: each datagram with the kernel's time of arrival
    (SO_TIMESTAMP), so that a busy test process cannot blur the gaps between them."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []

    def drain(self) -> list[tuple[float, str]]:
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(16))
            except BlockingIOError:
                return self.messages
            at = time.time()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP:
                    sec, usec = struct.unpack("qq", value[:16])
                    at = sec + usec / 1e6
            self.messages.append((at, data.decode()))

    def close(self) -> None:
        self.sock.close()


def test_watchdog_pings_go_on_while_a_slow_reflector_decides(dvault, daemons, tmp_path_factory):
    interval = 4.0  # WATCHDOG_USEC: the daemon pings every interval / 2
    reflector = dvault.root / "tools" / "slow-reflector.sh"
    reflector.write_text("touch \"$0.start\"\nsleep 8\ntouch \"$0.end\"\n"
                         "echo '{\"decision\": \"continue\", \"reason\": \"slow\"}'\n")
    write_plan(dvault, PID, [{"title": "quick", "run": "true"}],
               extra=f'reflector: "sh {reflector}"')
    path = str(tmp_path_factory.mktemp("n") / "notify")  # short: a socket path is < 108 bytes
    notify = NotifySocket(path)
    try:
        d = daemons(tick=0.3, env={**ENV, "NOTIFY_SOCKET": path,
                                   "WATCHDOG_USEC": str(int(interval * 1e6))})
        wait_for(lambda: os.path.exists(f"{reflector}.start"), 20, "the reflector started",
                 diag=d.log)
        wait_for(lambda: os.path.exists(f"{reflector}.end"), 20, "the reflector ended",
                 diag=d.log)
        wait_for(settled(dvault, PID, "completed"), 20, "completed", diag=d.log)
        pings = [at for at, m in notify.drain() if m == "WATCHDOG=1"]
        assert len(pings) >= 2, notify.messages
        gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
        assert max(gaps) < interval, (
            f"{max(gaps):.1f}s without WATCHDOG=1 (WatchdogSec {interval:g}s): systemd "
            f"would have killed the daemon; gaps {[round(g, 1) for g in gaps]}")
    finally:
        notify.close()


# --- 8: a lock file deleted while its plan runs -------------------------------------------------

def test_a_deleted_lock_file_never_lets_a_second_daemon_run_the_step(dvault, daemons):
    go, guard = dvault.root / "go", dvault.root / "guard"
    write_plan(dvault, PID, [{"title": "long", "run": dvault.step(go=go, guard=guard)},
                             {"title": "next", "run": dvault.step(guard=guard)}])
    a = daemons(tick=0.3, env=ENV)
    wait_for(lambda: starts(dvault, 0), 15, "step 0 started", diag=a.log)
    lock_path(dvault.plan_path(PID)).unlink()  # a person, or a sync tool
    b = daemons(tick=0.3, env=ENV)
    wait_ticks(b, dvault, 4)  # B has scanned the vault several times since
    os.utime(dvault.plan_path(PID))  # and looked at the plan once more, woken by a change
    wait_ticks(b, dvault, 3)
    assert len(starts(dvault, 0)) == 1, f"step 0 started twice: {marks(dvault.root / 'marks')}"
    go.touch()
    wait_for(settled(dvault, PID, "completed"), 30, "completed",
             diag=lambda: a.log()[-1500:] + "\n---\n" + b.log()[-1500:])
    found = marks(dvault.root / "marks")
    assert not [m for m in found if m[0] == "overlap"], f"two steps ran at once: {found}"
    assert len(starts(dvault, 0)) == 1 and starts(dvault, 1), found


# --- 9: leftovers, the claim of a completed plan, an unknown project ----------------------------

def test_temp_files_left_by_a_killed_writer_are_cleaned(dvault, daemons):
    write_plan(dvault, PID, [{"title": "one", "run": "true"}])
    meta = dvault.vault.meta
    left = [meta / "daemons" / f".{socket.gethostname()}.4194000.json.tmp",
            meta / "state" / "P" / f".{PID}.json.k2j4h5g6.tmp",
            dvault.plans / f".{PID}.md.a1b2c3d4.tmp"]
    kept = [dvault.plans / f".{PID}.md.swp", dvault.plans / "notes.tmp"]  # people's own
    day_old = time.time() - 86400
    for path in left + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half written by a process that was killed")
        os.utime(path, (day_old, day_old))
    d = daemons("--once", tick=0.3, env=ENV)
    assert d.wait(30) == 0, d.log()
    assert plan(dvault, PID).status.value == "completed"
    assert [p.name for p in left if p.exists()] == []
    assert [p.name for p in kept if p.exists()] == [p.name for p in kept]


@defect(9, "a completed plan keeps `claim:` (docs/plan-file.md: removed when the plan ends)")
def test_a_completed_plan_has_no_claim(dvault, daemons):
    write_plan(dvault, PID, [{"title": "one", "run": "true"}])
    d = daemons("--once", tick=0.3, env=ENV)
    assert d.wait(30) == 0, d.log()
    p = plan(dvault, PID)
    assert p.status.value == "completed" and p.reflection_log
    assert "claim" not in p.data, dvault.plan_path(PID).read_text()


def test_daemon_refuses_a_project_that_does_not_exist(dvault):
    write_plan(dvault, PID, [{"title": "one", "run": "true"}])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODULATIO_")}
    done = subprocess.run([PY, "-m", "modulatio_d", "daemon", "--vault", str(dvault.root),
                           "--project", "NOPE", "--once"], capture_output=True, text=True,
                          timeout=30, env={**env, **ENV})
    assert done.returncode != 0, done.stderr
    assert "NOPE" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert plan(dvault, PID).status.value == "approved"  # nothing was served


def test_daemon_serves_a_project_given_by_name(dvault, daemons):
    """The refusal above must not catch a project that exists."""
    write_plan(dvault, PID, [{"title": "one", "run": "true"}])
    d = daemons("--once", "--project", "P", tick=0.3, env=ENV)
    assert d.wait(30) == 0, d.log()
    assert plan(dvault, PID).status.value == "completed"
    assert events(dvault, "daemon_started")[-1]["projects"] == ["P"]

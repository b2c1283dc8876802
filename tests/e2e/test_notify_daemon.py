"""A real `modulatio daemon` under a real notify socket, as systemd runs it with
Type=notify and WatchdogSec=: an AF_UNIX datagram socket in tmp_path named by
NOTIFY_SOCKET, WATCHDOG_USEC in the daemon's environment, SIGTERM to stop it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import clean_env
from vault_texts import plan_text, write
from waiting import wait_for

from modulatio_d.ops.init import init

PY = sys.executable


class Receiver:
    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def has(self, message: str) -> bool:
        return message in self.drain()


@pytest.fixture
def receiver(tmp_path_factory):
    folder = tmp_path_factory.mktemp("n")  # short: a socket path holds at most 107 bytes
    path = str(folder / "notify")
    assert len(path) < 100, path
    r = Receiver(path)
    yield r, path
    r.sock.close()


def test_daemon_sends_ready_watchdog_status_and_stopping(tmp_path, receiver):
    recv, path = receiver
    vault = init(tmp_path / "vault")
    # A step that runs until released: the watchdog must keep being fed while it runs.
    write(vault.plans_dir("N") / "N-P-001.md", plan_text(
        "N-P-001", "approved",
        "  - title: Long step\n"
        "    run: [\"sh\", \"-c\", \"until [ -e release ]; do sleep 0.02; done\"]\n"))
    env = clean_env(NOTIFY_SOCKET=path, WATCHDOG_USEC="600000")  # ping at least every 0.3 s
    daemon = subprocess.Popen([PY, "-m", "modulatio_d", "daemon", "--vault", str(vault.root),
                               "--tick-seconds", "0.2"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        wait_for(lambda: recv.has("READY=1"), what="READY=1")
        wait_for(lambda: recv.has("STATUS=N/N-P-001 step 1/1: Long step"), what="STATUS of the step")
        # While the step runs, the watchdog keeps being fed from the step loop.
        seen = len(recv.drain())
        wait_for(lambda: recv.drain()[seen:].count("WATCHDOG=1") >= 3,
                   what="three WATCHDOG=1 during the step")
        assert daemon.poll() is None
        (vault.project_dir("N") / "release").touch()
        wait_for(lambda: "STATUS=idle" in recv.drain()[seen:], what="idle again")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        err = daemon.stderr.read().decode()
        daemon.stderr.close()
    msgs = recv.drain()
    assert msgs[-1] == "STOPPING=1", (msgs[-5:], err)
    assert msgs.count("READY=1") == 1 and msgs.count("STOPPING=1") == 1
    ready = msgs.index("READY=1")
    assert "WATCHDOG=1" in msgs[:ready]  # the first tick pings before it says ready
    assert ready < msgs.index("STATUS=N/N-P-001 step 1/1: Long step")
    assert all(m.split("=", 1)[0] in ("READY", "STATUS", "WATCHDOG", "STOPPING") for m in msgs)
    assert "cannot notify systemd" not in err


def test_no_notify_socket_means_no_messages_and_a_normal_run(tmp_path, receiver):
    recv, _ = receiver
    vault = init(tmp_path / "vault")
    write(vault.plans_dir("N") / "N-P-001.md",
          plan_text("N-P-001", "approved", "  - title: Quick\n    run: \"true\"\n"))
    t0 = time.monotonic()
    done = subprocess.run([PY, "-m", "modulatio_d", "daemon", "--vault", str(vault.root),
                           "--once"], env=clean_env(WATCHDOG_USEC="600000"),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - t0 < 30
    assert recv.drain() == []


def test_the_status_line_says_paused(tmp_path, receiver):
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops.pausing import pause_scope, resume_scope

    recv, path = receiver
    vault = init(tmp_path / "vault")
    env = clean_env(NOTIFY_SOCKET=path, MODULATIO_ALLOW_ROOT="1")
    daemon = subprocess.Popen([PY, "-m", "modulatio_d", "daemon", "--vault", str(vault.root),
                               "--tick-seconds", "0.2"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: recv.has("STATUS=idle"), what="idle")
        pause_scope(vault, None, "upgrade", False, utcnow(), {"USER": "ops"})
        wait_for(lambda: any(m.startswith("STATUS=paused (vault by ops@")
                             and m.endswith(": upgrade)") for m in recv.drain()),
                 what="STATUS says paused")
        seen = len(recv.drain())
        resume_scope(vault, None)
        wait_for(lambda: "STATUS=idle" in recv.drain()[seen:], what="idle after resume")
    finally:
        daemon.kill()
        daemon.wait()


def test_a_pool_speaks_for_its_workers(tmp_path, receiver):
    """Only the supervisor talks to systemd: one READY=1 once the workers have scanned,
    STATUS lines with the pool's counts (also after a resize), the watchdog fed."""
    recv, path = receiver
    vault = init(tmp_path / "vault")
    env = clean_env(NOTIFY_SOCKET=path, WATCHDOG_USEC="600000")
    pool = subprocess.Popen([PY, "-m", "modulatio_d", "daemon", "--workers", "2", "--vault",
                             str(vault.root), "--tick-seconds", "0.2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: recv.has("READY=1"), 60, "READY=1")
        beats = list(vault.daemons_dir.glob("*.json"))
        assert len(beats) == 2  # both workers had done their first scan
        wait_for(lambda: recv.has("STATUS=pool of 2: 2 worker(s) running"), 10, "STATUS")
        resized = subprocess.run([PY, "-m", "modulatio_d", "workers", "1", "--vault",
                                  str(vault.root)], env=clean_env(), capture_output=True,
                                 timeout=60, check=False)
        assert resized.returncode == 0, resized.stderr
        wait_for(lambda: recv.has("STATUS=pool of 1: 1 worker(s) running"), 10,
                 "STATUS after the resize")
        seen = len(recv.drain())
        wait_for(lambda: recv.drain()[seen:].count("WATCHDOG=1") >= 3, 10, "the watchdog")
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(timeout=30) == 0
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait()
        err = pool.stderr.read().decode()
        pool.stderr.close()
    msgs = recv.drain()
    assert msgs.count("READY=1") == 1, (msgs, err)  # a worker that spoke would add its own
    assert any(m.startswith("STOPPING=1") for m in msgs)

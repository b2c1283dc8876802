"""`daemon --detach`, `ps` and `stop`, end to end: real `modulatio` processes on a
real vault, real signals, waits on conditions with deadlines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from helpers import clean_env, modulatio
from vault_texts import plan_text, write
from waiting import wait_for

from modulatio_d.ops import detach, stopping
from modulatio_d.ops.init import init
from modulatio_d.store import processes
from modulatio_d.store.vault import Vault

PY = sys.executable
WAIT_STEP = "  - title: Wait for release\n    run: [\"sh\", \"-c\", \"{trap}until [ -e release ]; " \
            "do sleep 0.02; done\"]\n  - title: Then this\n    run: \"true\"\n"


def waiting_plan(vault: Vault, plan_id: str = "W-P-001", ignore_term: bool = False) -> None:
    steps = WAIT_STEP.format(trap="trap '' TERM; " if ignore_term else "")
    write(vault.plans_dir("W") / f"{plan_id}.md", plan_text(plan_id, "approved", steps))


def release(vault: Vault) -> None:
    if vault.project_dir("W").is_dir():
        (vault.project_dir("W") / "release").touch()


def plan_status(vault: Vault, plan_id: str) -> str | None:
    text = (vault.plans_dir("W") / f"{plan_id}.md").read_text()
    return next((line.split(":", 1)[1].split("#")[0].strip() for line in text.splitlines()
                 if line.startswith("status:")), None)


def ps(vault: Vault) -> list[dict]:
    result = modulatio("ps", "--json", "--vault", vault.root)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["daemons"]


@pytest.fixture
def vault(tmp_path):
    v = init(tmp_path / "vault")
    yield v
    # Whatever a failed test left running: kill it, and its steps with it.
    release(v)
    for beat in v.daemons_dir.glob("*.json"):
        pid = int(beat.stem.rsplit(".", 1)[1])
        if stopping.is_modulatio_daemon(pid):
            os.kill(pid, signal.SIGKILL)
    info = detach.running(v, 0)
    if info and stopping.is_modulatio_daemon(info.pid):
        os.kill(info.pid, signal.SIGKILL)


def test_detach_second_start_ps_and_stop(vault):
    waiting_plan(vault)
    first = modulatio("daemon", "--detach", "--vault", vault.root, "--tick-seconds", "0.3")
    assert first.returncode == 0, first.stderr
    assert "started in the background: pid" in first.stdout
    pid = int(first.stdout.split("pid ")[1].split()[0])
    assert detach.locked(vault) and detach.running(vault).pid == pid
    assert (vault.meta / "daemon.pid").read_text() == f"{pid}\n{socket.gethostname()}\n"
    assert stopping.is_modulatio_daemon(pid)

    second = modulatio("daemon", "--detach", "--vault", vault.root)
    assert second.returncode == 0, second.stderr
    assert f"already runs on this vault: pid {pid}" in second.stdout

    def running_w() -> dict | None:
        rows = ps(vault)
        return rows[0] if rows and rows[0]["active_plan"] == "W-P-001" else None

    row = wait_for(running_w, what="ps to show the detached daemon running W-P-001")
    assert (row["pid"], row["detached"], row["step"]) == (pid, True, 0)
    assert row["uptime_s"] >= 0 and row["age_s"] < 30 and row["last_tick"]
    table = modulatio("ps", "--vault", vault.root).stdout
    assert str(pid) in table and "detached" in table and "W-P-001" in table

    release(vault)
    wait_for(lambda: plan_status(vault, "W-P-001") == "completed", what="W-P-001 to complete")

    stopped = modulatio("stop", "--vault", vault.root)
    assert stopped.returncode == 0, stopped.stderr
    assert f"detached daemon {pid} stopped" in stopped.stdout
    assert processes.gone(pid) and not detach.locked(vault)
    assert list(vault.daemons_dir.glob("*.json")) == []  # a clean stop removes its heartbeat
    log = (vault.meta / "daemon.log").read_text()
    assert f"daemon {socket.gethostname()}.{pid} started" in log and "daemon stopped" in log
    assert ps(vault) == []

    again = modulatio("stop", "--vault", vault.root)
    assert again.returncode == 0 and "no detached daemon runs" in again.stdout


def test_stop_kills_a_daemon_that_does_not_stop_in_time(vault):
    # The step ignores SIGTERM, so the daemon waits its 5 s grace for it: longer
    # than --timeout. The plan stays executing; the next daemon resumes it.
    waiting_plan(vault, ignore_term=True)
    first = modulatio("daemon", "--detach", "--vault", vault.root, "--tick-seconds", "0.3")
    assert first.returncode == 0, first.stderr
    pid = detach.running(vault).pid
    wait_for(lambda: plan_status(vault, "W-P-001") == "executing", what="the claim")
    wait_for(lambda: (vault.plans_dir("W") / "W-P-001.runs").is_dir(), what="the step")

    stopped = modulatio("stop", "--timeout", "0.3", "--vault", vault.root)
    assert stopped.returncode == 0, stopped.stderr
    assert f"detached daemon {pid} did not stop within 0.3s: killed" in stopped.stdout
    assert processes.gone(pid) and not detach.locked(vault)
    assert plan_status(vault, "W-P-001") == "executing"


def test_stop_leaves_a_foreground_daemon_alone_unless_all(vault):
    waiting_plan(vault)
    fg = subprocess.Popen([PY, "-m", "modulatio_d", "daemon", "--vault", str(vault.root),
                           "--tick-seconds", "0.3"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, env=clean_env())
    try:
        rows = wait_for(lambda: [r for r in ps(vault) if r["active_plan"] == "W-P-001"],
                          what="the foreground daemon in ps")
        assert [(r["pid"], r["detached"]) for r in rows] == [(fg.pid, False)]

        alone = modulatio("stop", "--vault", vault.root)
        assert alone.returncode == 0 and "no detached daemon runs" in alone.stdout
        assert f"daemon {fg.pid} still runs on this vault" in alone.stderr
        assert fg.poll() is None

        stopped = modulatio("stop", "--all", "--vault", vault.root)
        assert stopped.returncode == 0, stopped.stderr
        assert f"daemon {fg.pid} stopped" in stopped.stdout
        assert fg.wait(timeout=10) == 0  # SIGTERM: a clean stop
        assert plan_status(vault, "W-P-001") == "executing"  # left for the next daemon
    finally:
        if fg.poll() is None:
            fg.kill()
            fg.wait()


def test_a_pid_file_nobody_locks_is_never_acted_on(vault):
    bystander = subprocess.Popen([PY, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE)
    try:
        write(vault.meta / "daemon.pid", f"{bystander.pid}\n{socket.gethostname()}\n")
        result = modulatio("stop", "--vault", vault.root)
        assert result.returncode == 0 and "no detached daemon runs" in result.stdout
        assert bystander.poll() is None
        assert modulatio("ps", "--vault", vault.root).stdout.strip() == \
            "no daemon runs on this vault"
    finally:
        bystander.stdin.close()
        bystander.wait(timeout=10)


def test_a_locked_pid_file_naming_another_program_is_not_acted_on(vault):
    # Whoever writes the vault can write the pid file and hold its lock: `stop`
    # still signals only a process whose command line is a modulatio daemon's.
    holder = subprocess.Popen(
        [PY, "-c", ("import fcntl, os, sys; f = open(sys.argv[1], 'w'); "
                    "fcntl.flock(f, fcntl.LOCK_EX); f.write(f'{os.getpid()}\\n'); f.flush(); "
                    "print('locked', flush=True); sys.stdin.read()"),
         str(vault.meta / "daemon.pid")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        result = modulatio("stop", "--vault", vault.root)
        assert result.returncode == 1
        assert f"names pid {holder.pid}, which is not a modulatio daemon" in result.stderr
        assert holder.poll() is None
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()


def test_a_daemon_that_dies_while_starting_is_reported_with_its_log(vault, tmp_path,
                                                                    monkeypatch):
    # Nothing in the vault stops a daemon any more (a file where .modulatio/daemons/
    # belongs only costs its heartbeats), so a stand-in for the daemon's interpreter
    # fails the start: a real process that writes its error to the log and exits 3.
    import functools
    import io

    from modulatio_d import cli

    standin = tmp_path / "python-that-fails"
    standin.write_text("#!/bin/sh\necho \"boom: cannot start with $*\" >&2\nexit 3\n")
    standin.chmod(0o755)
    monkeypatch.setattr(detach, "start", functools.partial(detach.start, python=str(standin)))
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["daemon", "--detach", "--vault", str(vault.root)],
                    cli.Context(environ={"MODULATIO_ALLOW_ROOT": "1"}, cwd=tmp_path, out=out,
                                err=err))
    assert code == 1
    assert "exited with 3 while starting" in err.getvalue()
    assert f"boom: cannot start with -P -m modulatio_d daemon --vault {vault.root}" \
        in err.getvalue()
    assert not detach.locked(vault)


def test_a_file_where_the_heartbeat_folder_belongs_does_not_stop_a_detached_daemon(vault):
    (vault.meta / "daemons").touch()  # heartbeats cannot be written: warned, work goes on
    write(vault.plans_dir("W") / "W-P-002.md", plan_text("W-P-002", "approved",
                                                         "  - run: \"true\"\n"))
    result = modulatio("daemon", "--detach", "--once", "--vault", vault.root)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: plan_status(vault, "W-P-002") == "completed", 30, "W-P-002 completed")
    wait_for(lambda: not detach.locked(vault), 30, "the detached daemon gone")
    assert "heartbeat not written" in (vault.meta / "daemon.log").read_text()


def test_detach_with_once_finishes_the_work_in_the_background(vault):
    write(vault.plans_dir("W") / "W-P-002.md", plan_text("W-P-002", "approved",
                                                    "  - title: Quick\n    run: \"true\"\n"))
    result = modulatio("daemon", "--detach", "--once", "--vault", vault.root)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: not detach.locked(vault), what="the --once daemon to exit")
    assert plan_status(vault, "W-P-002") == "completed"


def _beat(vault: Vault, pid: int) -> dict:
    return json.loads((vault.daemons_dir / f"{socket.gethostname()}.{pid}.json").read_text())


def test_stop_never_signals_another_vaults_daemon_named_by_forged_files(vault, tmp_path):
    # Whoever writes vault A plants a locked daemon.pid and a heartbeat naming the
    # daemon of vault B, with B's true start time: `stop --all` on A must leave it be.
    other = init(tmp_path / "other")
    started = modulatio("daemon", "--detach", "--vault", other.root, "--tick-seconds", "0.3")
    assert started.returncode == 0, started.stderr
    pid = detach.running(other).pid
    beat = wait_for(lambda: _beat(other, pid) if (other.daemons_dir / f"{socket.gethostname()}"
                                                     f".{pid}.json").exists() else None,
                    what="B's heartbeat")
    vault.daemons_dir.mkdir(exist_ok=True)
    write(vault.daemons_dir / f"{socket.gethostname()}.{pid}.json", json.dumps(beat))
    holder = subprocess.Popen(
        [PY, "-c", ("import fcntl, sys; f = open(sys.argv[1], 'w'); "
                    "fcntl.flock(f, fcntl.LOCK_EX); f.write(sys.argv[2]); f.flush(); "
                    "print('locked', flush=True); sys.stdin.read()"),
         str(vault.meta / "daemon.pid"), f"{pid}\n{socket.gethostname()}\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        result = modulatio("stop", "--all", "--timeout", "1", "--vault", vault.root)
        assert result.returncode == 1, result.stdout
        assert f"names pid {pid}, which is a modulatio daemon of another vault " \
               f"({other.root}): not signalled" in result.stderr
        assert result.stdout.strip() == "no daemon of this vault runs on this host"
        ticked = beat["last_tick"]
        wait_for(lambda: _beat(other, pid)["last_tick"] != ticked, what="B to tick on")
        assert not processes.gone(pid)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()
    stopped = modulatio("stop", "--vault", other.root)  # its own vault's stop still works
    assert stopped.returncode == 0 and f"detached daemon {pid} stopped" in stopped.stdout


def test_a_daemon_is_known_by_the_vault_it_serves_and_when_it_started(vault, tmp_path):
    # Started without --vault, in a folder of the vault: found the way the daemon found it.
    env = {k: v for k, v in clean_env().items() if k != "MODULATIO_VAULT"}
    (vault.root / "notes").mkdir()
    fg = subprocess.Popen([PY, "-m", "modulatio_d", "daemon", "--tick-seconds", "0.3"],
                          cwd=vault.root / "notes", env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        hb = vault.daemons_dir / f"{socket.gethostname()}.{fg.pid}.json"
        wait_for(hb.exists, what="the daemon's heartbeat")
        started_at = _beat(vault, fg.pid)["started_at"]
        assert stopping.served_vault(fg.pid) == (str(vault.root), "")
        assert stopping.not_this_vaults(vault, fg.pid, started_at) is None
        other = init(tmp_path / "other")
        assert stopping.not_this_vaults(other, fg.pid) == \
            f"a modulatio daemon of another vault ({vault.root})"
        # a heartbeat of a daemon that started an hour before this process did:
        # the pid was reused
        why = stopping.not_this_vaults(vault, fg.pid, "2000-01-01T00:00:00Z")
        assert why is not None and why.endswith("a reused pid")
        assert stopping.not_this_vaults(vault, os.getpid()) == "not a modulatio daemon"
    finally:
        fg.kill()
        fg.wait()


def test_a_detached_pool_with_its_own_log_file_daemon_json_and_stop_no_force(vault, tmp_path):
    waiting_plan(vault, ignore_term=True)  # its step shrugs off SIGTERM: the stop must wait
    log = tmp_path / "logs" / "pool.log"
    log.parent.mkdir()
    started = modulatio("daemon", "--detach", "--workers", "2", "--log-file", log,
                        "--tick-seconds", "0.3", "--vault", vault.root)
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("pid ")[1].split()[0])
    assert str(log) in started.stdout
    info = json.loads((vault.meta / "daemon.json").read_text())
    assert (info["pid"], info["vault"], info["log"], info["workers"]) == \
        (pid, str(vault.root), str(log), 2)
    assert info["version"] and info["started_at"] and info["host"] == socket.gethostname()
    assert not (vault.meta / "daemon.log").exists()

    def pool_busy():
        seen = json.loads(modulatio("ps", "--json", "--vault", vault.root).stdout)
        rows = [r for r in seen["daemons"] if r["pool"] == pid]
        return seen if len(rows) == 2 and any(r["active_plan"] == "W-P-001" for r in rows) \
            else None
    seen = wait_for(pool_busy, 30, "the detached pool to run W-P-001")
    assert seen["pools"][0]["detached"] and seen["pools"][0]["size"] == 2
    assert seen["queue"]["executing"] == 1 and seen["queue"]["approved"] == 0
    assert "worker" in log.read_text() or "started" in log.read_text()

    # --no-force: the step ignores SIGTERM, so the pool outlives the timeout: not killed.
    stopped = modulatio("stop", "--no-force", "--timeout", "0.5", "--vault", vault.root)
    assert stopped.returncode == 1 and "--no-force: not killed" in stopped.stdout, stopped
    assert not processes.gone(pid)
    # The worker kills its step after its grace (the daemon's own escalation), then all exit.
    wait_for(lambda: processes.gone(pid), 30, "the pool to stop by itself")
    assert not detach.locked(vault)
    assert modulatio("ps", "--vault", vault.root).stdout.strip() == "no daemon runs on this vault"

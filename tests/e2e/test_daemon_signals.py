"""Signals a daemon can expect (issue 9, defect 5), sent to real daemon processes.

- SIGHUP stops nothing: the running step goes on, and the config is read again
  at the next tick (even an edit that kept its size and mtime).
- Its terminal closing (a real pty hung up: SIGHUP, then EIO on every log
  write) or its log pipe closing (EPIPE; SIGPIPE is ignored): it runs on, and
  still stops cleanly on SIGTERM.
- A signal that ends it anyway (SIGKILL, SIGUSR1, ...) is a crash: the step dies
  with it, and the next daemon resumes the plan and runs the step again.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import termios
from types import SimpleNamespace

import pytest
from helpers import (
    PY,
    events,
    group_members,
    marks,
    pid_gone,
    plan,
    settled,
    starts,
    wait_started,
    wait_ticks,
    write_plan,
)
from waiting import wait_for

PID = "P-P-001"


def test_sighup_stops_nothing_and_rereads_the_config(dvault, daemons):
    go = dvault.root / "go"
    write_plan(dvault, PID, [{"title": "long", "run": dvault.step(go=go, note_term=True)}])
    d = daemons(tick=0.5)
    step = wait_for(lambda: starts(dvault, 0), 10, "the step started", diag=d.log)[0]
    # An edit the stat signature cannot see: same inode, same size, same mtime.
    config = dvault.vault.config_path
    st = config.stat()
    config.write_text(config.read_text().replace("{use: mock}", "[use: mock}"))
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns))

    d.signal(signal.SIGHUP)
    wait_ticks(d, dvault, 2)  # beats during the step: it lives, and so does the step
    assert d.alive(), d.log()
    assert not pid_gone(step[4])
    assert not [m for m in marks(dvault.root / "marks") if m[0] == "term"]
    go.touch()
    wait_for(settled(dvault, PID, "completed"), 10, "the plan completed", diag=d.log)
    refused = wait_for(lambda: events(dvault, "file_refused", kind="config"), 10,
                       "the config read again and refused", diag=d.log)
    assert refused[0]["pid"] == d.pid and "SIGHUP: reading the config again" in d.log()

    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0
    assert events(dvault, "daemon_stopped", pid=d.pid)


def _on_a_terminal(argv: list[str], env: dict[str, str]):
    """Start argv as the session leader of a new pty: (process, master fd, drain)."""
    master, slave = os.openpty()

    def own_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True, preexec_fn=own_terminal)
    os.close(slave)
    os.set_blocking(master, False)  # drained here, not by a thread that would keep it open
    seen = bytearray()

    def drain() -> bytes:
        try:
            while chunk := os.read(master, 4096):
                seen.extend(chunk)
        except BlockingIOError:
            pass
        return bytes(seen)

    return proc, master, drain


@pytest.mark.parametrize("how", ["terminal", "pipe"])
def test_a_closed_terminal_or_log_pipe_does_not_stop_the_daemon(dvault, tmp_path, how):
    go = dvault.root / "go"
    write_plan(dvault, PID, [{"title": "long", "run": dvault.step(go=go)}])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODULATIO_")}
    env["MODULATIO_ALLOW_ROOT"] = "1"  # CI runs the tests as root
    argv = [PY, "-m", "modulatio_d", "daemon", "--vault", str(dvault.root),
            "--tick-seconds", "0.3"]
    if how == "terminal":
        proc, master, drain = _on_a_terminal(argv, env)
    else:
        r, w = os.pipe()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=w, stderr=w, env=env,
                                start_new_session=True)
        os.close(w)
    try:
        step = wait_for(lambda: starts(dvault, 0), 20, "the step started")[0]
        if how == "terminal":
            wait_for(lambda: b"claimed P-P-001" in drain(), 10, "logs on the terminal")
            os.close(master)  # the terminal window closes: SIGHUP, then EIO on each write
        else:
            os.close(r)  # whoever read the log is gone: EPIPE on each write
        wait_ticks_of(proc.pid, dvault, 3)
        assert proc.poll() is None and not pid_gone(step[4])
        go.touch()
        wait_for(settled(dvault, PID, "completed"), 20, "the plan completed")
        # It still picks up new work, logging into the void.
        write_plan(dvault, "P-P-002", [{"title": "after", "run": dvault.step()}])
        wait_for(settled(dvault, "P-P-002", "completed"), 20, "a plan approved later completed")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert events(dvault, "daemon_stopped", pid=proc.pid)
    assert not list(dvault.vault.daemons_dir.glob("*.json"))


def wait_ticks_of(pid: int, dv, n: int) -> None:
    wait_ticks(SimpleNamespace(pid=pid, log=lambda: ""), dv, n)


def test_sigusr2_drains_the_step_ends_then_the_daemon_the_next_one_goes_on(dvault, daemons):
    """SIGUSR2 (a pool shrinking; was a crash before pools) lets the step finish, starts
    nothing more and exits 0; the next daemon runs the next step, not this one again."""
    go = dvault.root / "go"
    write_plan(dvault, PID, [{"title": "long", "run": dvault.step(go=go, note_term=True)},
                             {"title": "after", "run": dvault.step()}])
    d1 = daemons(tick=0.5)
    wait_started(d1, dvault)
    wait_for(lambda: starts(dvault, 0), 10, "the step started", diag=d1.log)
    d1.signal(signal.SIGUSR2)
    wait_ticks(d1, dvault, 2)  # it goes on beating: the step runs on
    assert d1.alive() and not [m for m in marks(dvault.root / "marks") if m[0] == "term"]
    go.touch()
    assert d1.wait(20) == 0
    p = plan(dvault, PID)
    assert p.status.value == "executing" and p.current_index == 1 and not p.in_flight
    assert [(e["index"], e["outcome"]) for e in p.reflection_log] == [(0, "ok")]
    assert starts(dvault, 1) == []
    d2 = daemons(tick=0.5)
    done = wait_for(settled(dvault, PID, "completed"), 20, "the next daemon went on", diag=d2.log)
    assert [(e["index"], e["outcome"]) for e in done.reflection_log] == [(0, "ok"), (1, "ok")]
    assert len(starts(dvault, 0)) == 1 and len(starts(dvault, 1)) == 1


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGALRM])
def test_a_signal_that_kills_the_daemon_is_a_crash_the_next_one_resumes(dvault, daemons, sig):
    go = dvault.root / "go"
    write_plan(dvault, PID, [{"title": "long", "run": dvault.step(go=go)},
                             {"title": "after", "run": dvault.step()}])
    d1 = daemons(tick=0.5)
    wait_started(d1, dvault)
    step = wait_for(lambda: starts(dvault, 0), 10, "the step started", diag=d1.log)[0]
    d1.signal(sig)
    assert d1.wait(10) == -sig
    wait_for(lambda: group_members(step[4]) == [], 10, "the step gone with its daemon")
    p = plan(dvault, PID)
    assert p.status.value == "executing" and p.in_flight["index"] == 0

    go.touch()
    d2 = daemons(tick=0.5)
    done = wait_for(settled(dvault, PID, "completed"), 20, "resumed and completed", diag=d2.log)
    assert [(e["index"], e["outcome"]) for e in done.reflection_log] == [
        (0, "interrupted"), (0, "ok"), (1, "ok")]
    assert len(starts(dvault, 0)) == 2 and len(starts(dvault, 1)) == 1

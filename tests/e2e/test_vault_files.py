"""Odd files and planted links in a vault, against real daemons and real commands.

Issue 9 (a FIFO or a folder named like a plan, an 8 GB sparse plan, a config
or usage file linked to /dev/zero) and issue 10 (links planted by a vault
writer to make the daemon or another person's command read or write a file
outside the vault). Every command runs as a real process with a hard timeout:
a hang fails the test instead of hanging it. Nothing outside the vault may
change, and no outside file's text may show up anywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import PY, events, plan, settled, wait_started, write_plan
from waiting import wait_for

pytestmark = pytest.mark.timeout(90)

SECRET = "api_key: SECRET-VALUE-9f3\npassword: hunter2-SECRET\n"


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MODULATIO_")}
    out["MODULATIO_ALLOW_ROOT"] = "1"  # CI runs as root
    return out


def run(dv, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """`modulatio ARGV --vault <dv>` as a process; a hang past `timeout` fails the test."""
    try:
        return subprocess.run([PY, "-m", "modulatio_d", *argv, "--vault", str(dv.root)],
                              capture_output=True, text=True, timeout=timeout, env=env(),
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`modulatio {' '.join(argv)}` hung for {timeout}s")


def outside_tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


def vault_text(dv) -> str:
    """Every regular file of the vault as text (links not followed, planted hard links
    left out: they are the outside file itself)."""
    out = []
    for p in dv.root.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.stat().st_nlink == 1:
            out.append(p.read_bytes().decode("utf-8", "replace"))
    return "\n".join(out)


def refused(dv, rel: str):
    def probe():
        return [e for e in events(dv, "file_refused") if e.get("path") == rel]
    return probe


# --- odd files: nothing hangs or stops ------------------------------------------------------

@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_fifo_or_folder_named_like_a_plan_stops_and_hangs_nothing(dvault, daemons, kind):
    odd = dvault.plans / "X.md"
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        odd.mkdir()
    write_plan(dvault, "P-P-001", [{"run": dvault.step()}])
    d = daemons()
    wait_for(settled(dvault, "P-P-001", "completed"), 30, "P-P-001 completed", diag=d.log)
    what = "a FIFO (named pipe)" if kind == "fifo" else "a folder"
    told = wait_for(refused(dvault, "P/plans/X.md"), 15, "X.md refused", diag=d.log)
    assert f"is {what}, not a regular file" in told[0]["reason"]
    assert d.alive()

    r = run(dvault, "validate")
    assert r.returncode == 1 and f"{odd}: error: is {what}, not a regular file" in r.stdout, r
    for argv in (["status"], ["status", "--json"], ["plan", "list"], ["metrics"]):
        r = run(dvault, *argv)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (argv, r)
    assert "P-P-001" in run(dvault, "plan", "list").stdout

    d.signal(signal.SIGTERM)
    assert d.wait(15) == 0
    assert events(dvault, "daemon_stopped", pid=d.pid)


def test_an_8_gb_sparse_plan_is_refused_from_its_size_with_little_memory(dvault):
    big = dvault.plans / "BIG.md"
    with open(big, "wb") as f:
        f.truncate(8 << 30)
    probe = ("import json, resource, subprocess, sys, time\n"
             "t = time.monotonic()\n"
             "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(json.dumps({'code': p.returncode, 'seconds': time.monotonic() - t,\n"
             "    'kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,\n"
             "    'out': p.stdout, 'err': p.stderr}))\n")
    for argv in (["validate"], ["status"], ["plan", "list"], ["metrics"]):
        out = subprocess.run([PY, "-c", probe, PY, "-m", "modulatio_d",
                              *argv, "--vault", str(dvault.root)],
                             capture_output=True, text=True, timeout=60, env=env(), check=True)
        got = json.loads(out.stdout)
        assert got["kib"] < 200 * 1024, (argv, got["kib"])  # 8.4 GB before the fix
        assert got["seconds"] < 20, (argv, got["seconds"])  # 35 s before; ~0.3 s alone
        assert "Traceback" not in got["err"], got
        if argv == ["validate"]:
            assert got["code"] == 1
            assert (f"{big}: error: file is 8589934592 bytes, more than the 67108864 allowed "
                    f"(move long text out of the plan)") in got["out"]
        else:
            assert got["code"] == 0, (argv, got)


# --- config and usage linked to /dev/zero and to secrets -----------------------------------

@pytest.mark.parametrize("how", ["dev-zero", "secret-link", "secret-hardlink"])
def test_a_config_linked_elsewhere_is_refused_and_never_copied(dvault, daemons, tmp_path, how):
    secret = tmp_path / "secrets.yaml"
    secret.write_text(SECRET)
    config = dvault.vault.config_path
    config.unlink()
    if how == "dev-zero":
        config.symlink_to("/dev/zero")
    elif how == "secret-link":
        config.symlink_to(secret)
    else:
        os.link(secret, config)
    write_plan(dvault, "P-P-001", [{"run": dvault.step()}])
    d = daemons()
    wait_started(d, dvault)
    wait_for(settled(dvault, "P-P-001", "completed"), 30, "P-P-001 completed", diag=d.log)
    told = wait_for(refused(dvault, ".modulatio/config.yaml"), 15, "config refused",
                    diag=d.log)
    reason = told[0]["reason"]
    assert ("has 2 hard links" in reason if how == "secret-hardlink"
            else "is a symbolic link" in reason), reason
    assert d.alive()

    r = run(dvault, "validate")
    assert r.returncode == 1 and f"{config}: " in r.stdout
    for shown in (r.stdout + r.stderr, vault_text(dvault), d.log()):
        assert "SECRET" not in shown and "api_key" not in shown and "hunter2" not in shown
    assert secret.read_text() == SECRET


def test_a_usage_file_linked_to_dev_zero_leaves_metrics_and_plan_show_working(dvault):
    write_plan(dvault, "P-P-001", ["a"], status="draft")
    (dvault.plans / "P-P-001.usage.jsonl").symlink_to("/dev/zero")
    r = run(dvault, "metrics")
    assert r.returncode == 0 and 'modulatio_usage_calls_total{project="P"} 0' in r.stdout, r
    assert "is a symbolic link" in r.stderr  # told, never read
    r = run(dvault, "plan", "show", "P-P-001", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["usage"]["calls"] == 0, r


# --- links planted to make someone write outside ------------------------------------------

def test_a_command_never_appends_an_event_through_a_link(dvault, tmp_path):
    bashrc = tmp_path / "other-person" / ".bashrc"
    bashrc.parent.mkdir()
    bashrc.write_text("alias ll='ls -l'\n")
    events_path = dvault.vault.events_path
    events_path.unlink(missing_ok=True)
    events_path.symlink_to(bashrc)
    write_plan(dvault, "P-P-001", ["a"], status="draft")
    r = run(dvault, "plan", "approve", "P-P-001")
    assert r.returncode == 0, r
    assert "event not recorded" in r.stderr and "is a symbolic link" in r.stderr, r
    assert bashrc.read_text() == "alias ll='ls -l'\n"
    assert plan(dvault, "P-P-001").status.value == "approved"


@pytest.mark.parametrize("folder", [".modulatio/state", ".modulatio/daemons",
                                    "P/plans/P-P-001.runs"])
def test_a_folder_replaced_by_a_link_gets_nothing_created_outside(dvault, daemons, tmp_path,
                                                                  folder):
    outside = tmp_path / "outside-folder"
    outside.mkdir()
    (outside / "kept").write_text("kept\n")
    before = outside_tree(outside)
    link = dvault.root / folder
    if link.exists():
        os.rename(link, tmp_path / "moved-away")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    write_plan(dvault, "P-P-001", [{"run": dvault.step()}])
    d = daemons()
    wait_started(d, dvault)
    if folder.endswith(".runs"):  # the step cannot start: an error outcome, told why
        p = wait_for(lambda: plan(dvault, "P-P-001").reflection_log or None, 30,
                     "an attempt recorded", diag=d.log)
        assert p[0]["outcome"] == "error" and "symbolic link" in p[0]["summary"], p
    elif folder.endswith("state"):  # the record cannot be saved: the plan is not run
        wait_for(lambda: "state, a symbolic link" in d.log(), 30, "the refusal logged",
                 diag=d.log)
    else:  # heartbeats are lost (warned); the work goes on
        wait_for(settled(dvault, "P-P-001", "completed"), 30, "P-P-001 completed",
                 diag=d.log)
        assert "heartbeat not written" in d.log() and "symbolic link" in d.log()
    assert d.alive()
    d.signal(signal.SIGTERM)
    assert d.wait(15) == 0
    assert outside_tree(outside) == before
    assert link.is_symlink()


def test_a_linked_daemon_pid_file_is_never_truncated(dvault, tmp_path):
    victim = tmp_path / "root-owned-file"
    victim.write_text("precious\n")
    pid = dvault.vault.meta / "daemon.pid"
    pid.symlink_to(victim)
    r = run(dvault, "daemon", "--detach")
    assert r.returncode != 0 and "daemon.pid: is a symbolic link" in r.stderr, r
    assert victim.read_text() == "precious\n"
    assert not (dvault.vault.meta / "daemon.log").exists()  # nothing was started
    r = run(dvault, "ps")
    assert r.returncode == 0 and "no daemon runs" in r.stdout, r


def test_a_hard_link_to_an_outside_file_as_a_usage_file_is_refused(dvault, daemons, tmp_path):
    outside = tmp_path / "outside.log"
    outside.write_text("outside\n")
    write_plan(dvault, "P-P-001", [{"run": dvault.step()}])
    os.link(outside, dvault.plans / "P-P-001.usage.jsonl")
    d = daemons()
    wait_for(lambda: "has 2 hard links" in d.log(), 30, "the usage file refused", diag=d.log)
    assert outside.read_text() == "outside\n"
    assert d.alive()
    r = run(dvault, "metrics")
    assert r.returncode == 0 and "has 2 hard links" in r.stderr, r


def test_step_logs_and_usage_are_no_more_readable_than_their_plan(dvault, daemons):
    path = write_plan(dvault, "P-P-001", [{"run": dvault.step(
        usage=['{"input_tokens": 1}'])}])
    path.chmod(0o600)
    d = daemons()
    wait_for(settled(dvault, "P-P-001", "completed"), 30, "P-P-001 completed", diag=d.log)
    runs = dvault.plans / "P-P-001.runs"
    assert oct(runs.stat().st_mode & 0o777) == oct(0o700)
    assert oct((runs / "0001-01.log").stat().st_mode & 0o777) == oct(0o600)
    assert oct((dvault.plans / "P-P-001.usage.jsonl").stat().st_mode & 0o777) == oct(0o600)


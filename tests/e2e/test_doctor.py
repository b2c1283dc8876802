"""`modulatio doctor` as a real process on real folders: a local disk (safe), a tmpfs in
a private mount namespace (a caveat: memory), a sync folder (unsafe), two runs with
--peer on one host, and what it leaves behind. On the GlusterFS test bed:
tests/multihost/test_doctor_multihost.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modulatio_d.core.filesystems import Tier, classify, mount_for, parse_mountinfo
from modulatio_d.ops import doctor
from modulatio_d.ops.init import init

PY = sys.executable
CHECKS = ["filesystem", "sync folder", "mount options", "flock", "posix locks", "inotify",
          "cache staleness", "clock offset", "permissions", "free space", "inodes", "trust"]
PEER_CHECKS = ["peer", "flock across hosts", "posix across hosts", "freshness across hosts",
               "inotify across hosts"]


def run_doctor(vault: Path, *args: str, timeout: float = 60) -> tuple[int, dict]:
    done = subprocess.run([PY, "-m", "modulatio_d", "doctor", "--json", "--vault", str(vault),
                           *args], capture_output=True, text=True, timeout=timeout)
    assert done.stderr == "", done.stderr
    return done.returncode, json.loads(done.stdout)


def verdicts(report: dict) -> dict[str, str]:
    return {c["check"]: c["verdict"] for c in report["checks"]}


def on_local_disk(path: Path) -> bool:
    m = mount_for(parse_mountinfo(Path("/proc/self/mountinfo").read_text()), str(path))
    return m is not None and classify(m).tier is Tier.LOCAL and m.fstype not in ("tmpfs",
                                                                                  "ramfs")


def test_a_vault_on_a_local_disk_is_safe(tmp_path):
    if not on_local_disk(tmp_path):
        pytest.skip(f"{tmp_path} is not on a local disk here")
    vault = init(tmp_path / "v")
    code, report = run_doctor(vault.root)
    assert code == 0, report
    assert verdicts(report) == dict.fromkeys(CHECKS, "ok")
    assert report["verdict"] == "ok" and report["exit_code"] == 0
    assert os.listdir(vault.meta / "doctor") == []  # it cleans up after itself


def test_the_text_report_has_a_line_per_check_and_the_verdict(tmp_path):
    if not on_local_disk(tmp_path):
        pytest.skip(f"{tmp_path} is not on a local disk here")
    vault = init(tmp_path / "v")
    done = subprocess.run([PY, "-m", "modulatio_d", "doctor", "--vault", str(vault.root)],
                          capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert done.returncode == 0
    assert lines[0].startswith(f"modulatio doctor: {vault.root} on host ")
    assert [line.split()[0] for line in lines[1:-1] if not line.lstrip().startswith("->")] \
        == ["ok"] * len(CHECKS)
    assert lines[-1] == "verdict: safe (exit 0)"


def test_a_vault_on_tmpfs_works_with_a_caveat(tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("mounting a tmpfs in a private mount namespace needs root and unshare")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True,
                           timeout=20)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    point = tmp_path / "mem"
    point.mkdir()
    script = (f'mount -t tmpfs -o size=1g tmpfs "{point}" && "{PY}" -m modulatio_d init '
              f'"{point}/v" >/dev/null && exec "{PY}" -m modulatio_d doctor --json --vault '
              f'"{point}/v"')
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True,
                          text=True, timeout=60)
    assert done.stderr == "", done.stderr
    report = json.loads(done.stdout)
    assert done.returncode == 1, report
    assert verdicts(report) == {**dict.fromkeys(CHECKS, "ok"), "filesystem": "caveat"}
    [fs] = [c for c in report["checks"] if c["check"] == "filesystem"]
    assert fs["detail"].startswith("tmpfs (memory)") and "lost" in fs["detail"]
    assert not any(line.split()[4] == str(point) for line in
                   Path("/proc/self/mountinfo").read_text().splitlines())  # it stayed private


def test_a_vault_in_a_syncthing_folder_is_unsafe(tmp_path):
    (tmp_path / "synced").mkdir()
    (tmp_path / "synced" / ".stfolder").mkdir()
    vault = init(tmp_path / "synced" / "notes" / "v")
    code, report = run_doctor(vault.root)
    assert code == 2
    assert verdicts(report)["sync folder"] == "unsafe"
    [row] = [c for c in report["checks"] if c["check"] == "sync folder"]
    assert "Syncthing" in row["detail"] and str(tmp_path / "synced") in row["detail"]


def test_a_world_writable_vault_is_unsafe_for_no_daemon_would_start_there(tmp_path):
    vault = init(tmp_path / "v")
    vault.root.chmod(0o777)
    code, report = run_doctor(vault.root)
    assert verdicts(report)["permissions"] == "caveat"
    [row] = [c for c in report["checks"] if c["check"] == "permissions"]
    assert row["hint"] == f"chmod o-w {vault.root}"
    # the trust checks (store/trust.py) stop a daemon at start on such a vault
    assert verdicts(report)["trust"] == "unsafe" and code == 2
    [row] = [c for c in report["checks"] if c["check"] == "trust"]
    assert row["detail"] == f"{vault.root}: not trusted: writable by everyone (mode 0777)"
    assert row["hint"] == f"fix: `chmod o-w {vault.root}`"


def test_two_peers_on_one_host_see_each_other_but_say_nothing_crossed_hosts(tmp_path):
    vault = init(tmp_path / "v")
    argv = [PY, "-m", "modulatio_d", "doctor", "--json", "--peer", "--peer-wait", "20",
            "--vault", str(vault.root)]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    second = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    out, _ = first.communicate(timeout=60)
    reports = [json.loads(out), json.loads(second.stdout)]
    assert [first.returncode, second.returncode] == [1, 1]
    for report in reports:
        seen = verdicts(report)
        assert [c["check"] for c in report["checks"]][-5:] == PEER_CHECKS
        assert seen["peer"] == "caveat"
        assert seen["flock across hosts"] == seen["posix across hosts"] == "ok"
        assert seen["inotify across hosts"] == "ok"  # one kernel: it sees the other run
        [peer] = [c for c in report["checks"] if c["check"] == "peer"]
        assert "runs on this host too" in peer["detail"]
    assert os.listdir(vault.meta / "doctor") == []


def test_a_peer_that_never_comes(tmp_path):
    vault = init(tmp_path / "v")
    start = time.monotonic()
    code, report = run_doctor(vault.root, "--peer", "--peer-wait", "1")
    assert time.monotonic() - start < 20
    [peer] = [c for c in report["checks"] if c["check"] == "peer"]
    assert (peer["verdict"], peer["detail"]) == ("caveat", "no peer seen in 1 s")
    assert code >= 1


def test_files_of_a_run_that_died_long_ago_are_removed(tmp_path):
    vault = init(tmp_path / "v")
    folder = vault.meta / "doctor"
    folder.mkdir()
    old, recent = folder / "gone-1.hello", folder / "other-2.hello"
    old.write_text("{}")
    recent.write_text("{}")
    an_hour_and_more = time.time() - doctor.LEFTOVER_S - 60
    os.utime(old, (an_hour_and_more, an_hour_and_more))
    run_doctor(vault.root)
    assert sorted(os.listdir(folder)) == ["other-2.hello"]


def test_a_filesystem_whose_flock_stays_on_the_host_makes_doctor_exit_2(tmp_path):
    # The classification decides the verdict, whatever the local lock tests found.
    vault = init(tmp_path / "v")
    line = (f"60 22 0:50 / {vault.root} rw,relatime - nfs4 files:/e "
            "rw,vers=4.2,hard,local_lock=flock\n")
    report = doctor.run(vault, mountinfo=line)
    assert report.exit_code == 2
    [fs] = [r for r in report.rows if r.check == "filesystem"]
    assert fs.detail.startswith("NFSv4.2 with local_lock=flock")
    assert {r.check for r in report.rows if r.verdict == 0} >= {"flock", "posix locks"}


def test_peer_wait_out_of_range_is_a_usage_error(tmp_path):
    vault = init(tmp_path / "v")
    done = subprocess.run([PY, "-m", "modulatio_d", "doctor", "--peer-wait", "0", "--vault",
                           str(vault.root)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--peer-wait" in done.stderr


def test_trust_checks_run_after_the_others_and_a_failing_check_hides_nothing(
        tmp_path, monkeypatch):
    vault = init(tmp_path / "v")

    def check_broken(probe):
        raise PermissionError(13, "Permission denied", str(probe.vault.meta))

    def check_who_may_write(probe):
        return [doctor.Row("who may write", doctor.Verdict.OK, f"looked at {probe.vault.root}")]

    monkeypatch.setattr(doctor, "CHECKS", [check_broken, *doctor.CHECKS])
    monkeypatch.setattr(doctor, "TRUST_CHECKS", [check_who_may_write])
    report = doctor.run(vault)
    names = [r.check for r in report.rows]
    assert names == ["broken", *CHECKS[:-1], "who may write"]  # in place of the trust check
    broken = report.rows[0]
    assert (broken.verdict, broken.detail) == (
        doctor.Verdict.CAVEAT, f"could not run: {vault.meta}: Permission denied")
    assert report.rows[-1].detail == f"looked at {vault.root}"

"""`modulatio doctor` on the GlusterFS test bed: one host alone works with caveats
(inotify blind to other hosts, client caches); `--peer` on two hosts at once sees the
other host, its locks excluding both ways, and no inotify event from it."""

from __future__ import annotations

import json
import statistics

from multihost_bed import PY
from waiting import wait_for

CAVEATS_ALONE = {"filesystem", "mount options", "inotify", "cache staleness"}


def report(done) -> dict:
    assert done.stderr == "", done.stderr
    return json.loads(done.stdout)


def rows(rep: dict) -> dict[str, dict]:
    return {c["check"]: c for c in rep["checks"]}


def test_doctor_on_one_host_of_the_bed_works_with_caveats(bed, shared_vault):
    done = bed.modulatio("h2", "doctor", "--json", "--vault", shared_vault)
    rep = report(done)
    assert done.returncode == 1, rep
    seen = rows(rep)
    assert {k for k, c in seen.items() if c["verdict"] == "caveat"} == CAVEATS_ALONE
    assert {c["verdict"] for c in seen.values()} == {"ok", "caveat"}
    assert rep["host"] == "h2"
    assert seen["filesystem"]["detail"].startswith("GlusterFS (FUSE client)")
    assert "never reports changes made on other hosts" in seen["inotify"]["detail"]
    assert "about 1 s late" in seen["cache staleness"]["detail"]
    assert "attribute-timeout=default (1 s)" in seen["mount options"]["detail"]


def test_doctor_peer_on_two_hosts_at_once(bed, shared_vault, tmp_path):
    args = ["-m", "modulatio_d", "doctor", "--json", "--peer", "--peer-wait", "60",
            "--vault", shared_vault]
    first = bed.start("h1", PY, *args, log=tmp_path / "h1.json")
    second = bed.modulatio("h3", *args[2:], timeout=90)
    assert first.wait(90) == 1, first.log()
    reports = {"h1": json.loads(first.log()), "h3": report(second)}
    assert second.returncode == 1, reports["h3"]
    for host, other in (("h1", "h3"), ("h3", "h1")):
        seen = rows(reports[host])
        assert seen["peer"]["verdict"] == "ok"
        assert seen["peer"]["detail"].startswith(f"{other} (run {other}-")
        for kind in ("flock across hosts", "posix across hosts"):
            assert seen[kind]["verdict"] == "ok", seen[kind]
            assert f"both ways between {host} and {other}" in seen[kind]["detail"]
        assert seen["inotify across hosts"]["verdict"] == "caveat"
        assert f"none of {other}'s writes" in seen["inotify across hosts"]["detail"]
        # The volume's client caches are on (GlusterFS defaults): replaced files are
        # read late, measured by round trips.
        fresh = seen["freshness across hosts"]
        assert fresh["verdict"] == "caveat"
        assert len(fresh["data"]["round_trips_ms"]) == 5
        assert max(fresh["data"]["round_trips_ms"]) > 200
    assert bed.run_on("h2", "ls", "-A", shared_vault / ".modulatio" / "doctor").stdout == ""


def test_doctor_peer_with_the_recommended_volume_options_finds_fresh_reads(
        bed, shared_vault, tmp_path):
    try:
        bed.volume_set("performance.stat-prefetch", "off")
        bed.volume_set("performance.open-behind", "off")
        args = ["-m", "modulatio_d", "doctor", "--json", "--peer", "--peer-wait", "60",
                "--vault", shared_vault]
        first = bed.start("h2", PY, *args, log=tmp_path / "h2.json")
        second = report(bed.modulatio("h1", *args[2:], timeout=90))
        first.wait(90)
        for rep in (json.loads(first.log()), second):
            # Round trips with the volume's defaults take about 1 s each (1 s caches).
            fresh = rows(rep)["freshness across hosts"]
            assert statistics.median(fresh["data"]["round_trips_ms"]) < 500, fresh
    finally:
        bed.volume_reset("performance.stat-prefetch")
        bed.volume_reset("performance.open-behind")


def test_doctor_on_every_host_reports_the_vaults_trust_problems(bed, shared_vault):
    # Made on h1: a .modulatio/ anyone may write and a config owned by a stranger (a uid
    # with no user and in no group): a daemon on any host would refuse to start
    # (store/trust.py), so doctor on every host says unsafe, naming both.
    meta, config = shared_vault / ".modulatio", shared_vault / ".modulatio" / "config.yaml"
    bed.run_on("h1", "chmod", "0777", meta)
    bed.run_on("h1", "chown", "4242", config)
    want = [(f"{meta}: not trusted: writable by everyone (mode 0777)",
             f"fix: `chmod o-w {meta}`"),
            (f"{config}: not trusted: owned by 4242 (uid 4242), who is neither the daemon's "
             "user (root), root, nor in the vault's trusted group root",
             f"fix: `chown root {config}` (as root) or remove it if 4242 may not run "
             "commands as root")]
    for host in bed.hosts:
        done = bed.modulatio(host, "doctor", "--json", "--vault", shared_vault)
        rep = report(done)
        assert done.returncode == 2, rep
        assert rep["host"] == host
        trust = [c for c in rep["checks"] if c["check"] == "trust"]
        assert [(c["verdict"], c["detail"], c["hint"]) for c in trust] == [
            ("unsafe", detail, hint) for detail, hint in want], (host, trust)
        assert {c["verdict"] for c in rep["checks"] if c["check"] != "trust"} <= {
            "ok", "caveat"}, (host, rep)
    # Fixed on h3, every host finds the vault trusted again.
    bed.run_on("h3", "chmod", "0755", meta)
    bed.run_on("h3", "chown", "root", config)
    # Another host sees the new owner and mode once its client's attribute cache lets go
    # of the old ones (GlusterFS md-cache: seconds), so each host is given a deadline.
    for host in bed.hosts:
        last: list[dict] = []

        def trusted(host=host, last=last):
            last[:] = [report(bed.modulatio(host, "doctor", "--json", "--vault",
                                            shared_vault))]
            return rows(last[0])["trust"]["verdict"] == "ok"
        wait_for(trusted, 60, f"doctor on {host} trusting the fixed vault",
                 diag=lambda last=last: json.dumps(last, default=str)[:3000])

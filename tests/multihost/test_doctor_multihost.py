"""`modulatio doctor` on the GlusterFS test bed: one host alone works with caveats
(inotify blind to other hosts, client caches); `--peer` on two hosts at once sees the
other host, its locks excluding both ways, and no inotify event from it."""

from __future__ import annotations

import json
import statistics

from multihost_bed import PY

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

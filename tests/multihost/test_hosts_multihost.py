"""Host identity (issue 13, item 5): daemons on two hosts share a vault; each host's
`ps` and `status` list both, the other host's judged by its heartbeat's age (no pid of
it exists here), and `stop --all` on one host stops only that host's daemons."""

from __future__ import annotations

import json

from waiting import wait_for


def ps(bed, host: str, vault) -> list[dict]:
    out = bed.modulatio(host, "ps", "--json", "--vault", vault)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["daemons"]


def test_daemons_are_shown_per_host_and_stop_all_stays_on_its_host(bed, shared_vault,
                                                                     tmp_path):
    a = bed.start_daemon("h1", shared_vault, log=tmp_path / "a.log", tick=1)
    b = bed.start_daemon("h2", shared_vault, log=tmp_path / "b.log", tick=1)
    want = {("h1", a.inner_pid), ("h2", b.inner_pid)}
    for host in ("h1", "h2"):
        wait_for(lambda h=host: {(r["host"], r["pid"]) for r in ps(bed, h, shared_vault)}
                 == want, 30, f"{host}'s ps to list both daemons",
                 diag=lambda: a.log() + b.log())
    shown = bed.modulatio("h1", "status", "--json", "--vault", shared_vault)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    states = {(d["host"], d["pid"]): (d["state"], d["local"]) for d in status["daemons"]}
    assert states == {("h1", a.inner_pid): ("live", True), ("h2", b.inner_pid): ("live", False)}
    text = bed.modulatio("h1", "status", "--vault", shared_vault).stdout
    assert "daemons: 2 live, 0 stale   (h1: 1, h2: 1)" in text, text

    stopped = bed.modulatio("h1", "stop", "--all", "--vault", shared_vault)
    assert stopped.returncode == 0, stopped.stderr
    assert a.wait(30) == 0
    assert f"daemon {b.inner_pid} on h2 still runs on this vault" in stopped.stderr
    assert b.alive()
    wait_for(lambda: {(r["host"], r["pid"]) for r in ps(bed, "h2", shared_vault)}
             == {("h2", b.inner_pid)}, 30, "h1's daemon gone from ps", diag=b.log)


def test_one_detached_daemon_per_vault_across_hosts(bed, shared_vault):
    """daemon.pid's flock crosses hosts: a `daemon --detach` on h2 finds h1's running and
    starts nothing, so daemon.log, appended without an flock, has one writer at a time
    (docs/multi-host.md)."""
    first = bed.modulatio("h1", "daemon", "--detach", "--tick-seconds", "1",
                          "--vault", shared_vault)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "daemon started in the background: pid " in first.stdout, first.stdout
    pid = int(first.stdout.split("pid ")[1].split()[0])
    second = bed.modulatio("h2", "daemon", "--detach", "--tick-seconds", "1",
                           "--vault", shared_vault)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"a detached daemon already runs on this vault: pid {pid} " in second.stdout, \
        second.stdout
    log = bed.path("h1", shared_vault / ".modulatio" / "daemon.log").read_text()
    headers = [line for line in log.splitlines() if line.startswith("--- ")]
    assert len(headers) == 1 and "--detach on h1:" in headers[0], log
    stopped = bed.modulatio("h1", "stop", "--vault", shared_vault)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_for(lambda: ps(bed, "h1", shared_vault) == [], 30, "the detached daemon gone")

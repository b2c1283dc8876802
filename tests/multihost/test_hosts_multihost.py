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

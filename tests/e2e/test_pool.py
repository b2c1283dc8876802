"""The worker pool (`daemon --workers N`, `workers N`, `--once`): real supervisors, real
workers forked from them, real signals. Steps wait on go-files, so what runs at each
moment is known."""

from __future__ import annotations

import json
import os
import signal
import socket

from helpers import PROJECT, marks, modulatio, pid_gone, plan, settled, starts, write_plan
from waiting import wait_for


def ps(dv) -> dict:
    r = modulatio("ps", "--json", "--vault", dv.root)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def pool_of(dv, pid: int) -> dict | None:
    return next((p for p in ps(dv)["pools"] if p["pid"] == pid), None)


def workers_now(dv, pid: int) -> dict[str, list[int]] | None:
    """{state: [slots]} of the pool's workers, as `ps --json` shows them."""
    p = pool_of(dv, pid)
    if p is None:
        return None
    out: dict[str, list[int]] = {}
    for w in p["workers"]:
        out.setdefault(w["state"], []).append(w["slot"])
    return {k: sorted(v) for k, v in out.items()}


def test_a_pool_of_4_shrinks_to_1_without_killing_a_step_and_grows_to_3(dvault, daemons):
    ids = [f"P-P-{n:03d}" for n in range(1, 7)]
    for i in ids:
        write_plan(dvault, i, [
            {"run": dvault.step(go=dvault.root / f"go-{i}", note_term=True,
                                guard=dvault.root / f"guard-{i}-0")},
            {"run": dvault.step(go=dvault.root / "go-second", note_term=True)}])
    d = daemons("--workers", "4", tick=0.5)
    # Four workers, each running the first step of one plan.
    wait_for(lambda: len(starts(dvault, 0)) == 4, 30, "4 first steps started", diag=d.log)
    assert workers_now(dvault, d.pid) == {"running": [1, 2, 3, 4]}
    busy = {m[1] for m in starts(dvault, 0)}
    # A new step is told within a second (at most a beat a second: docs/daemon.md).
    wait_for(lambda: {r["active_plan"] for r in ps(dvault)["daemons"]
                      if r["pool"] == d.pid} == busy, 5, "the heartbeats to tell the plans")
    rows = ps(dvault)["daemons"]
    assert {r["active_plan"] for r in rows if r["pool"] == d.pid} == busy
    assert {r["slot"] for r in rows if r["pool"] == d.pid} == {1, 2, 3, 4}

    r = modulatio("workers", "1", "--vault", dvault.root)
    assert r.returncode == 0, r.stderr
    # Within a second or so the supervisor has three workers finishing their step.
    wait_for(lambda: workers_now(dvault, d.pid) == {"running": [1], "draining": [2, 3, 4]},
             15, "the pool to drain three workers", diag=d.log)
    assert ps(dvault)["pools"][0]["size"] == 1
    assert all(m[0] != "term" for m in marks(dvault.root / "marks"))  # no step was stopped

    # The draining workers finish their step, start no other, and exit.
    for i in busy:
        (dvault.root / f"go-{i}").touch()
    wait_for(lambda: workers_now(dvault, d.pid) == {"running": [1]}, 30,
             "the drained workers to exit", diag=d.log)
    assert len([r for r in ps(dvault)["daemons"] if r["pool"] == d.pid]) == 1
    ended = [m for m in marks(dvault.root / "marks") if m[0] == "end" and m[2] == 0]
    assert {m[1] for m in ended} == busy  # every step the shrink caught ran to its end

    r = modulatio("workers", "3", "--vault", dvault.root)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: workers_now(dvault, d.pid) == {"running": [1, 2, 3]}, 15,
             "the pool to grow to 3", diag=d.log)
    for i in ids:
        (dvault.root / f"go-{i}").touch()
    (dvault.root / "go-second").touch()
    for i in ids:
        wait_for(settled(dvault, i, "completed"), 60, f"{i} to complete", diag=d.log)
    # No duplicate run: each step of each plan started once, none stopped, none overlapped.
    seen = [(m[1], m[2]) for m in marks(dvault.root / "marks") if m[0] == "start"]
    assert sorted(seen) == sorted((i, s) for i in ids for s in (0, 1))
    assert not [m for m in marks(dvault.root / "marks") if m[0] in ("term", "overlap")]

    d.signal(signal.SIGTERM)
    assert d.wait(30) == 0
    assert ps(dvault) == {"daemons": [], "pools": [], "queue": ps(dvault)["queue"]}


def test_a_killed_worker_is_restarted_and_its_plan_resumes(dvault, daemons):
    write_plan(dvault, "P-P-001", [{"run": dvault.step(go=dvault.root / "go")},
                                   {"run": dvault.step()}])
    d = daemons("--workers", "2", tick=0.5)
    wait_for(lambda: starts(dvault, 0), 30, "the first step to start", diag=d.log)
    # A new step is told within a second (at most a beat a second: docs/daemon.md).
    wait_for(lambda: any(r["active_plan"] == "P-P-001" for r in ps(dvault)["daemons"]), 5,
             "the heartbeat to tell the plan", diag=d.log)
    rows = ps(dvault)["daemons"]
    victim = next(r for r in rows if r["active_plan"] == "P-P-001")
    os.kill(victim["pid"], signal.SIGKILL)

    def restarted():
        p = pool_of(dvault, d.pid)
        ws = p["workers"] if p else []
        return len(ws) == 2 and victim["pid"] not in {w["pid"] for w in ws} and \
            next(w for w in ws if w["slot"] == victim["slot"])["restarts"] == 1
    wait_for(restarted, 15, "the killed worker's slot to be started again", diag=d.log)
    (dvault.root / "go").touch()
    p = wait_for(settled(dvault, "P-P-001", "completed"), 60, "P-P-001 to complete",
                 diag=d.log)
    assert [e["index"] for e in p.reflection_log] == [0, 0, 1] or \
        [e["index"] for e in p.reflection_log] == [0, 1]
    assert len(starts(dvault, 0)) == 2  # the killed attempt, then the resumed one
    # `stop --all` stops a pool through its supervisor (never its workers alone: it would
    # start them again), and names no worker as left running.
    started = len([e for e in _events(dvault) if e.get("event") == "worker_started"])
    r = modulatio("stop", "--all", "--vault", dvault.root)
    assert r.returncode == 0 and f"pool {d.pid} stopped" in r.stdout, r
    assert "still runs" not in r.stderr, r
    assert d.wait(30) == 0
    assert len([e for e in _events(dvault) if e.get("event") == "worker_started"]) == started
    assert ps(dvault)["daemons"] == []


def test_pool_sizes_bad_and_absurd_are_refused_and_zero_runs_nothing(dvault, daemons):
    write_plan(dvault, "P-P-001", [{"run": dvault.step()}])
    for bad in ("-1", "65", "many"):
        r = modulatio("workers", bad, "--vault", dvault.root)
        assert r.returncode == 2 and "from 0 to 64" in r.stderr, r
    r = modulatio("daemon", "--workers", "-3", "--vault", dvault.root)
    assert r.returncode == 2 and "from 0 to 64" in r.stderr, r

    assert modulatio("workers", "0", "--vault", dvault.root).returncode == 0
    d = daemons("--workers", "2", tick=0.5)
    wait_for(lambda: workers_now(dvault, d.pid) == {}, 15, "a pool of 0", diag=d.log)
    assert ps(dvault)["pools"][0]["size"] == 0 and plan(dvault, "P-P-001").status == "approved"

    # A malformed size is refused with file:line; the size in force (0) stays.
    size_file = dvault.vault.meta / "pool" / f"{socket.gethostname()}.yaml"
    size_file.write_text("# pool\nworkers: lots\n")
    wait_for(lambda: [e for e in _events(dvault) if e.get("event") == "file_refused"
                      and e.get("kind") == "pool"], 15, "the refusal", diag=d.log)
    refusal = next(e for e in _events(dvault) if e.get("event") == "file_refused")
    assert refusal["line"] == 2 and refusal["path"].endswith(".yaml")
    assert "from 0 to 64" in modulatio("workers", "--vault", dvault.root).stdout
    assert modulatio("workers", "--vault", dvault.root).returncode == 1
    assert ps(dvault)["pools"][0]["size"] == 0 and workers_now(dvault, d.pid) == {}

    assert modulatio("workers", "1", "--vault", dvault.root).returncode == 0
    wait_for(settled(dvault, "P-P-001", "completed"), 30, "the plan to run", diag=d.log)
    d.signal(signal.SIGTERM)
    assert d.wait(30) == 0


def test_a_once_pool_runs_the_backlog_with_its_workers_together_and_exits_0(dvault, daemons):
    ids = [f"P-P-{n:03d}" for n in range(1, 7)]
    for i in ids:
        write_plan(dvault, i, [{"run": dvault.step(go=dvault.root / "go")}, {"run": dvault.step()}])
    d = daemons("--workers", "3", "--once")
    wait_for(lambda: len(starts(dvault, 0)) == 3, 30, "3 workers running a step each",
             diag=d.log)
    (dvault.root / "go").touch()
    assert d.wait(60) == 0, d.log()
    assert all(plan(dvault, i).status.value == "completed" for i in ids)
    seen = [(m[1], m[2]) for m in marks(dvault.root / "marks") if m[0] == "start"]
    assert sorted(seen) == sorted((i, s) for i in ids for s in (0, 1))  # each step once
    events = _events(dvault)
    assert sorted(e["slot"] for e in events if e["event"] == "worker_started") == [1, 2, 3]
    assert sorted((e["slot"], e["how"]) for e in events if e["event"] == "worker_ended") == \
        [(1, "exit 0"), (2, "exit 0"), (3, "exit 0")]
    assert not [e for e in events if e["event"] == "worker_died"]
    assert ps(dvault)["daemons"] == [] and ps(dvault)["pools"] == []


def test_a_once_pool_starts_no_worker_again_and_exits_1_when_one_is_killed(dvault, daemons):
    write_plan(dvault, "P-P-001", [{"run": dvault.step(go=dvault.root / "go")}])
    d = daemons("--workers", "2", "--once")
    wait_for(lambda: starts(dvault, 0), 30, "the step to start", diag=d.log)
    victim = wait_for(lambda: next((r["pid"] for r in ps(dvault)["daemons"]
                                    if r["active_plan"] == "P-P-001"), None), 5,
                      "the heartbeat to tell the plan", diag=d.log)
    os.kill(victim, signal.SIGKILL)
    assert d.wait(30) == 1, d.log()
    events = _events(dvault)
    assert len([e for e in events if e["event"] == "worker_started"]) == 2
    assert {(e["worker"], e["how"]) for e in events if e["event"] == "worker_ended"} >= \
        {(victim, "signal 9")}
    assert plan(dvault, "P-P-001").in_flight  # resumable, as after any daemon's death
    (dvault.root / "go").touch()
    assert daemons("--once").wait(60) == 0
    assert plan(dvault, "P-P-001").status.value == "completed"


def test_workers_are_forks_holding_nothing_of_the_supervisor_and_die_with_it(dvault, daemons):
    write_plan(dvault, "P-P-001", [{"run": dvault.step(go=dvault.root / "go")}])
    d = daemons("--workers", "2")
    wait_for(lambda: starts(dvault, 0), 30, "the step to start", diag=d.log)
    workers = wait_for(lambda: (p := pool_of(dvault, d.pid)) and len(p["workers"]) == 2
                       and [w["pid"] for w in p["workers"]], 15, "two workers", diag=d.log)
    ours = _shared_objects(d.pid)
    assert ours, "the supervisor holds its wake-up pipe"
    for w in workers:
        with open(f"/proc/{w}/cmdline", "rb") as f, open(f"/proc/{d.pid}/cmdline", "rb") as g:
            assert f.read() == g.read()  # forked, not a new interpreter
        with open(f"/proc/{w}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == d.pid  # its parent
        assert os.getpgid(w) == w  # a group of its own: a terminal's ^C is the supervisor's
        assert not _shared_objects(w) & ours, f"worker {w} holds the supervisor's descriptors"
    step = starts(dvault, 0)[0][4]
    d.kill()
    wait_for(lambda: all(pid_gone(p) for p in [*workers, step]), 15,
             "the workers and their step to die with the supervisor")


def test_a_forked_worker_reopens_the_vault_not_through_a_number_it_no_longer_holds(tmp_path):
    """The supervisor's vault descriptor is closed in the worker and its number may be
    reused at once: the worker's reads must open the vault again, not use that number."""
    from modulatio_d.daemon import worker_fork
    from modulatio_d.ops.init import init
    from modulatio_d.store import fs

    vault = init(tmp_path / "v")
    (vault.root / "note.md").write_text("hello")
    assert fs.read(vault.root / "note.md", "plan").raw == b"hello"  # the root opened here
    held = fs.opening.register(vault.root).fd()

    def run(argv, env, cwd) -> int:
        while os.open(os.devnull, os.O_RDONLY) < held:  # the old number now /dev/null's
            pass
        return 0 if fs.read(vault.root / "note.md", "plan").raw == b"hello" else 3

    child = worker_fork.fork(run, [], dict(os.environ), vault.root)
    assert wait_for(lambda: child.poll() is not None, 30, "the child to end") is not None
    assert child.returncode == 0


def _shared_objects(pid: int) -> set[str]:
    """The pipes, sockets and other kernel objects `pid` holds above stderr (the same
    object has the same name in every process that holds it)."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if int(fd) > 2 and target.startswith(("pipe:", "socket:", "anon_inode:[eventfd]")):
            out.add(target)
    return out


def _events(dv) -> list[dict]:
    out = []
    for line in dv.vault.events_path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


assert PROJECT == "P"

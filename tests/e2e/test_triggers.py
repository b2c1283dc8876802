"""Triggers with real processes: a watched folder under a burst of changes, three racing
daemons, overflow past capacity, and one webhook delivery fired again and again."""

from __future__ import annotations

import json
import subprocess
import time

from helpers import PROJECT, PY, clean_env, cli, events, pid_gone, plan, settled, wait_ticks
from waiting import wait_for

from modulatio_d.core import markdown


def write_trigger(dv, trigger_id: str, keys: str) -> None:
    folder = dv.root / PROJECT / "triggers"
    folder.mkdir(exist_ok=True)
    (folder / f"{trigger_id}.md").write_text(f"---\nobjective: React\n{keys}---\nNotes.\n")


def kickoffs(dv, trigger_id: str) -> list[str]:
    return sorted(p.stem for p in dv.plans.glob(f"{trigger_id}-*.md"))


def listed_paths(dv, plan_id: str) -> list[str]:
    path = dv.plan_path(plan_id)
    body = markdown.split(path, path.read_text())[3]
    return [line[3:-1] for line in body.splitlines() if line.startswith("- `")]


def state(dv, trigger_id: str) -> dict:
    try:
        return json.loads((dv.root / PROJECT / "triggers" / f"{trigger_id}.state.json")
                          .read_text())
    except FileNotFoundError:
        return {}


def test_a_burst_of_100_changes_makes_one_or_two_kickoffs_with_three_daemons(dvault, daemons):
    drop = dvault.root / "drop"
    drop.mkdir()
    (drop / "already-there").write_text("baseline, not a change")
    counts = dvault.root / "counts"
    write_trigger(dvault, "T1", "watch: [drop]\ndebounce: 500ms\npoll: 100ms\nsteps:\n"
                  f"  - 'printf \"%s\\n\" \"$MODULATIO_TRIGGER_PATHS\" | wc -l >> {counts}'\n")
    started = [daemons() for _ in range(3)]
    wait_for(lambda: state(dvault, "T1").get("primed"), 20, "the baseline look",
             diag=lambda: started[0].log())
    t0 = time.monotonic()
    for i in range(100):  # spread over about a second: the burst the debounce absorbs
        (drop / f"f{i:03d}").write_text(str(i))
        while time.monotonic() < t0 + (i + 1) / 100:
            pass
    want = {str(drop / f"f{i:03d}") for i in range(100)}

    def all_listed():
        got = [p for k in kickoffs(dvault, "T1") for p in listed_paths(dvault, k)]
        return got if set(got) >= want else None

    got = wait_for(all_listed, 30, "every changed path in a kickoff",
                   diag=lambda: started[0].log())
    made = kickoffs(dvault, "T1")
    assert 1 <= len(made) <= 2, made
    assert sorted(got) == sorted(want)  # each path in exactly one kickoff, baseline in none
    for k in made:
        wait_for(settled(dvault, k, "completed"), 30, f"{k} ran")
    fired = events(dvault, "trigger_fired", trigger="T1")  # logged after the file is made
    assert sorted(e["plan"] for e in fired) == made  # each made exactly once, by one daemon
    # the steps were given the paths in their environment
    assert sum(int(n) for n in counts.read_text().split()) == 100
    assert "T1" in cli(dvault, "trigger", "list").out


def test_a_trigger_folder_made_after_the_daemon_started_is_fired(dvault, daemons):
    """A daemon that started with no cron/ nor triggers/ (which loads no kickoff code)
    fires the first trigger written later."""
    drop = dvault.root / "drop"
    drop.mkdir()
    d = daemons()
    wait_ticks(d, dvault, 2)  # past its first cron passes, with nothing to fire
    write_trigger(dvault, "T3", "watch: [drop]\ndebounce: 100ms\npoll: 100ms\n")
    wait_for(lambda: state(dvault, "T3").get("primed"), 20, "the baseline look", diag=d.log)
    (drop / "new").write_text("a change")
    assert wait_for(lambda: kickoffs(dvault, "T3"), 20, "the kickoff", diag=d.log)


def test_a_pool_worker_imports_nothing_from_the_folder_its_pool_started_in(dvault, tmp_path):
    """A worker is forked, not started with `python -P`: the folder on the supervisor's
    sys.path (a `python -m` run's working folder) must not be on the worker's when it
    loads the trigger code later (which imports the standard library's `zoneinfo`)."""
    here, marker = tmp_path / "cwd", tmp_path / "planted-module-imported"
    here.mkdir()
    (here / "zoneinfo.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                      "raise ImportError('planted')\n")
    drop = dvault.root / "drop"
    drop.mkdir()
    with open(tmp_path / "pool.log", "wb") as log:
        pool = subprocess.Popen([PY, "-m", "modulatio_d", "daemon", "--vault", str(dvault.root),
                                 "--workers", "1", "--tick-seconds", "0.5"], cwd=here,
                                env=clean_env(MODULATIO_ALLOW_ROOT="1"), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
    try:
        wait_for(lambda: list(dvault.vault.daemons_dir.glob("*.json")), 30, "the worker's beat")
        write_trigger(dvault, "T4", "watch: [drop]\ndebounce: 100ms\npoll: 100ms\n")
        wait_for(lambda: state(dvault, "T4").get("primed"), 20, "the baseline look",
                 diag=lambda: (tmp_path / "pool.log").read_text())
        (drop / "new").write_text("a change")
        assert wait_for(lambda: kickoffs(dvault, "T4"), 20, "the kickoff")
        assert not marker.exists()
    finally:
        workers = [int(p.name.split(".")[-2]) for p in dvault.vault.daemons_dir.glob("*.json")]
        pool.kill()
        pool.wait()
        wait_for(lambda: all(pid_gone(w) for w in workers), 15, "the worker to die with it")


def test_overflow_past_capacity_is_dropped_and_reported(dvault, daemons):
    drop = dvault.root / "drop"
    drop.mkdir()
    write_trigger(dvault, "T2", "watch: ['drop/*.csv']\ndebounce: 300ms\npoll: 100ms\n"
                  "capacity: 10\noverflow: drop-newest\napprove: false\n")
    d = daemons()
    wait_for(lambda: state(dvault, "T2").get("primed"), 20, "the baseline look", diag=d.log)
    for i in range(30):
        (drop / f"{i:02d}.csv").write_text("x")
    (drop / "ignored.txt").write_text("not matched by the glob")
    kick = wait_for(lambda: kickoffs(dvault, "T2"), 20, "the kickoff", diag=d.log)
    assert len(kick) == 1
    wait_for(lambda: events(dvault, "trigger_overflow", trigger="T2"), 10, "the overflow event")
    p = plan(dvault, kick[0])
    assert p.status.value == "draft" and p.data["dropped_paths"] == 20
    assert len(listed_paths(dvault, kick[0])) == 10
    assert "20 more dropped by overflow" in dvault.plan_path(kick[0]).read_text()
    [over] = events(dvault, "trigger_overflow", trigger="T2")
    assert over["capacity"] == 10 and over["policy"] == "drop-newest"
    ticket = dvault.root / PROJECT / "tickets" / "T2-T-01.md"
    assert ticket.exists() and "more than 10 changed paths" in ticket.read_text()


def test_one_webhook_delivery_fired_five_times_by_concurrent_processes_makes_one_kickoff(
        dvault, daemons, tmp_path):
    got = dvault.root / "got"
    write_trigger(dvault, "HOOK", "webhook: true\nsteps:\n"
                  f"  - 'printf %s \"$MODULATIO_TRIGGER_PAYLOAD\" > {got}'\n")
    payload = tmp_path / "payload.json"
    payload.write_text('{"ref": "main", "after": "abc123"}')
    argv = [PY, "-m", "modulatio_d", "trigger", "fire", "HOOK", "--vault", str(dvault.root),
            "--payload", str(payload), "--delivery-id", "gh-42"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=clean_env()) for _ in range(5)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, outs
    fresh = [o for o, _ in outs if "fired already" not in o]
    assert len(fresh) == 1, outs
    [kick] = kickoffs(dvault, "HOOK")
    assert fresh[0].strip() == kick
    assert len(events(dvault, "trigger_fired", trigger="HOOK")) == 1
    other = cli(dvault, "trigger", "fire", "HOOK", "--payload", str(payload),
                "--delivery-id", "gh-43")
    assert other.code == 0 and len(kickoffs(dvault, "HOOK")) == 2
    d = daemons()
    wait_for(settled(dvault, kick, "completed"), 30, "the kickoff ran", diag=d.log)
    assert got.read_text().startswith('{"ref": "main"')


def test_bad_triggers_are_refused_whole_with_their_line(dvault):
    write_trigger(dvault, "BAD", "watch: [drop]\ndebounce: soon\n")
    write_trigger(dvault, "BOTH", "watch: [drop]\nwebhook: true\n")
    v = cli(dvault, "validate")
    text = v.out + v.err
    assert v.code != 0
    assert "BAD.md:4" in text and "debounce" in text, text
    assert "BOTH.md:4" in text and "both given" in text, text
    s = cli(dvault, "status")
    assert "BAD.md" in s.out
    fire = cli(dvault, "trigger", "fire", "BOTH", "--payload", "/dev/null")
    assert fire.code != 0

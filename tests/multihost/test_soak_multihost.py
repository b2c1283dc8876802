"""Many plans, several daemons on every host, one shared vault (issue 13, Tests).

The soak: 3 hosts x 2 daemons race over 60 plans x 3 steps on the GlusterFS volume.
Every step runs exactly once, no two steps of one plan ever run at once, every plan
completes. The crash: every daemon on one host is SIGKILLed while each of them is in
a step; the other hosts take its plans over once the file server frees their locks
(the steps die with their daemon by its dead man's switch, which ends the last holder of the
lock descriptor), and each killed step runs again at most once, under a higher token.

What a step leaves (the ground truth, on the shared volume, one new file per run, so
that no two hosts ever write the same file): `marks/<plan>.<step>.<host>.<pid>`,
holding the step's fencing token. Each step runs under a sentinel flock of its plan
(`marks/<plan>.sentinel`, `flock -n`): a run that finds it taken (a step of the same
plan running anywhere at that moment) leaves `marks/CONCURRENT.<plan>.<step>...`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from multihost_bed import BED_DIR, PY
from waiting import wait_for

# The soak takes 20-40 s on 2 busy cores, the crash test 15-30 s; the bounds are for a
# machine shared with other test runs.
pytestmark = pytest.mark.timeout(240)

HOSTS = ("h1", "h2", "h3")
DAEMONS_PER_HOST = 2
STEPS = 3
BUSY = 75  # flock's exit code when the sentinel is taken


def step_command(marks: Path, body: str = "true") -> str:
    """A step: under its plan's sentinel (or it leaves a CONCURRENT mark), it leaves its
    mark, then runs `body`."""
    mark = f'{marks}/"$MODULATIO_PLAN_ID.$MODULATIO_STEP_INDEX.$(hostname).$$"'
    inner = f'echo "$MODULATIO_FENCING_TOKEN" > {mark}.tmp && mv {mark}.tmp {mark}; {body}'
    return (f'flock -n -E {BUSY} {marks}/"$MODULATIO_PLAN_ID.sentinel" sh -c \'{inner}\'; '
            f'rc=$?; if [ $rc = {BUSY} ]; then '
            f'touch {marks}/"CONCURRENT.$MODULATIO_PLAN_ID.$MODULATIO_STEP_INDEX.$(hostname).$$"; '
            'fi; exit $rc')


def _made(folder: Path) -> bool:
    """mkdir -p through a FUSE client whose cached view may lag the volume's: a parent
    it still thinks missing (ENOENT), then the folder it made it thinks missing
    (EEXIST, yet not a folder to it): looked at again until the view agrees."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return True


def write_plans(folder: Path, ids: list[str], steps: list[str]) -> None:
    """Plan files written straight onto the volume (through h1's mount), as a person's
    editor would: a temporary file renamed into place."""
    wait_for(lambda: _made(folder), 15, f"{folder} made through the host's mount")
    for plan_id in ids:
        head = [f"id: {plan_id}", f"title: Plan {plan_id}", "status: approved",
                f"priority: {int(plan_id[-3:]) % 3 * 10 + 40}", "sub_objectives:"]
        head += ["  - " + json.dumps({"title": f"s{i}", "run": run})
                 for i, run in enumerate(steps)]
        head += ["current_index: 0", "reflection_log: []"]
        tmp = folder / f".{plan_id}.md.new"
        tmp.write_text("---\n" + "\n".join(head) + "\n---\nThe body, people's own.\n")
        os.replace(tmp, folder / f"{plan_id}.md")


STATUS = re.compile(r"^status: *(\w+)", re.M)


def statuses(folder: Path, ids: list[str]) -> dict[str, str]:
    out = {}
    for plan_id in ids:
        try:
            found = STATUS.search((folder / f"{plan_id}.md").read_text())
        except OSError:  # replaced by a rename on another host meanwhile (ESTALE)
            found = None
        out[plan_id] = found.group(1) if found else "?"
    return out


def runs(marks: Path) -> dict[tuple[str, int], list[tuple[str, int]]]:
    """(plan, step) -> [(host, token)] of every run that left its mark."""
    out: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    for path in marks.iterdir():
        parts = path.name.split(".")
        if len(parts) != 4 or not parts[1].isdigit():
            continue
        token = path.read_text().strip().rsplit(":", 1)[-1]  # MODULATIO_FENCING_TOKEN: plan:n
        out[(parts[0], int(parts[1]))].append((parts[2], int(token)))
    return out


def concurrent(marks: Path) -> list[str]:
    return sorted(p.name for p in marks.iterdir() if p.name.startswith("CONCURRENT."))


def events(path: Path) -> list[dict]:
    out = []
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"event": "TORN LINE", "line": line})
    return out


def start_daemons(bed, vault: Path, tmp_path: Path) -> dict[str, list]:
    daemons = {h: [bed.start_daemon(h, vault, log=tmp_path / f"{h}-{k}.log", tick=0.5)
                   for k in range(DAEMONS_PER_HOST)] for h in HOSTS}
    events_path = bed.path("h1", vault / ".modulatio" / "events.jsonl")
    want = {(h, d.inner_pid) for h, ds in daemons.items() for d in ds}
    wait_for(lambda: want <= {(e.get("host"), e.get("pid")) for e in events(events_path)
                              if e.get("event") == "daemon_started"}, 60,
             "every daemon started", interval=0.2,
             diag=lambda: logs(daemons))
    return daemons


def missing_report(bed, view: Path, missing: list, daemons: dict[str, list]) -> str:
    """Where the missing step_started lines are: on the brick or not, and the warnings."""
    brick = BED_DIR / "brick" / (view / ".modulatio" / "events.jsonl").relative_to(
        bed.path("h1", bed.mount))
    there = {(e.get("plan"), e.get("index")) for e in events(brick)
             if e.get("event") == "step_started"}
    warned = [line for ds in daemons.values() for d in ds for line in d.log().splitlines()
              if "WARNING" in line or "ERROR" in line]
    clients = [f"{log.name}: {line}" for log in sorted((BED_DIR / "log").glob("client-*.log"))
               for line in log.read_text(errors="replace").splitlines()
               if "] E [" in line or "] W [" in line]  # GlusterFS's errors and warnings
    return (f"{[(m, 'on the brick' if m in there else 'not on the brick') for m in missing]}"
            f"; warnings: {warned[:20]}; GlusterFS clients: {clients[-20:]}")


def logs(daemons: dict[str, list]) -> str:
    return "\n".join(f"--- {d.host} {d.inner_pid}\n{d.log()[-1500:]}"
                     for ds in daemons.values() for d in ds)


@pytest.fixture
def recommended_volume(bed):
    """The volume options docs/multi-host.md recommends (stat-prefetch and open-behind
    off), then GlusterFS's defaults again."""
    bed.volume_options("recommended")
    try:
        yield
    finally:
        bed.volume_options("default")


@pytest.fixture
def default_volume(bed):
    """GlusterFS's default volume options (stat-prefetch and open-behind on). With them a
    holder's own reads and writes of its plan fail for seconds at times (ESTALE, then
    ENOENT for a file that is there, up to ~15 s on the bed): the holder keeps the plan
    and waits it out (daemon/writeback.py); before it did, it left the plan `executing`
    and another host ran the step again as an orphan's (in each of 4 soaks)."""
    bed.volume_options("default")
    yield


@pytest.mark.parametrize("volume", ["recommended_volume", "default_volume"])
def test_six_daemons_on_three_hosts_run_every_step_of_60_plans_exactly_once(
        bed, shared_vault, tmp_path, request, volume):
    request.getfixturevalue(volume)
    n_plans = 60
    view = bed.path("h1", shared_vault)
    marks = view / "marks"
    marks.mkdir()
    ids = [f"P-P-{n:03d}" for n in range(1, n_plans + 1)]
    daemons = start_daemons(bed, shared_vault, tmp_path)
    start = time.monotonic()
    write_plans(view / "P" / "plans", ids, [step_command(shared_vault / "marks")] * STEPS)
    default = volume == "default_volume"
    done = lambda: set(statuses(view / "P" / "plans", ids).values()) == {"completed"}  # noqa: E731
    if default:
        # With GlusterFS's defaults a host's client can stay in that state for minutes
        # (once: two plans of h3 waited over 100 s): what ran must have run once; the
        # plans still held then are left, each to its holder, until SIGTERM ends the wait.
        try:
            wait_for(done, 90, "every plan completed", interval=0.5)
        except BaseException as e:  # noqa: BLE001 (pytest's Failed is no Exception)
            print(f"\nsoak (default_volume): not every plan completed: {e}"[:300])
    else:
        wait_for(done, 150, "every plan completed", interval=0.5,
                 diag=lambda: f"{statuses(view / 'P' / 'plans', ids)}\n{logs(daemons)}")
    took = time.monotonic() - start
    # A daemon never ends by itself: one that did says why in its log, shown here.
    assert [d for ds in daemons.values() for d in ds if not d.alive()] == [], logs(daemons)
    for ds in daemons.values():
        for d in ds:
            d.signal(signal.SIGTERM)
    assert [d.wait(60) for ds in daemons.values() for d in ds] == [0] * 6, logs(daemons)
    # Every status read, not "?": a read can fail with ESTALE for a while (default options).
    final = wait_for(lambda: (f := statuses(view / "P" / "plans", ids)) and "?" not in
                     f.values() and f, 60, "every plan's status readable", interval=0.2)
    if default:  # those not completed are not re-run by anyone: run on, then complete
        ids = [p for p in ids if final[p] == "completed"]
        assert len(ids) >= len(final) - 6, final  # at most one held per daemon

    assert concurrent(marks) == []
    ran = runs(marks)
    seen = events(view / ".modulatio" / "events.jsonl")
    twice = {k: v for k, v in ran.items() if len(v) != 1}
    assert twice == {}, (twice, [e for e in seen if e.get("plan") in {p for p, _ in twice}
                                 or e.get("event") == "TORN LINE"])
    assert set(ran) >= {(p, i) for p in ids for i in range(STEPS)}
    assert default or set(ran) == {(p, i) for p in ids for i in range(STEPS)}
    ran = {k: v for k, v in ran.items() if k[0] in ids}
    # Each plan ran under one claim, token 1, on one host.
    assert {v[0][1] for v in ran.values()} == {1}
    hosts_of = {p: {ran[(p, i)][0][0] for i in range(STEPS)} for p in ids}
    assert all(len(h) == 1 for h in hosts_of.values()), hosts_of
    # The work was spread over the hosts.
    by_host = Counter(next(iter(h)) for h in hosts_of.values())
    assert set(by_host) == set(HOSTS), by_host

    # An append that failed or went without its flock says so in its daemon's log: looked
    # at first, so that a missing or torn line below comes with its cause when it has one.
    lost = [line for ds in daemons.values() for d in ds for line in d.log().splitlines()
            if "could not append" in line or "event not recorded" in line
            or "without its flock" in line]
    assert lost == []
    assert [e for e in seen if e["event"] == "TORN LINE"] == []
    claims = Counter((e["plan"], e["token"]) for e in seen if e["event"] == "claimed"
                     and e["plan"] in ids)
    assert claims == Counter({(p, 1): 1 for p in ids})
    starts = Counter((e["plan"], e["index"]) for e in seen if e["event"] == "step_started"
                     and e["plan"] in ids)
    # The ledger tells every step once: none twice, none missing. A missing line comes
    # with where it is (on the file server's copy, the brick, or not: a reader's view or
    # a writer's loss) and what the daemons and GlusterFS clients logged.
    assert max(starts.values()) == 1, starts
    missing = sorted(set((p, i) for p in ids for i in range(STEPS)) - set(starts))
    assert missing == [], missing_report(bed, view, missing, daemons)
    assert set(starts) == {(p, i) for p in ids for i in range(STEPS)}, starts
    ends = Counter((e["plan"], e["index"]) for e in seen if e["event"] == "step_ended"
                   and e["plan"] in ids)
    assert ends == Counter({(p, i): 1 for p in ids for i in range(STEPS)}), ends
    # A holder still waiting when SIGTERM came (default options, a stuck client) leaves
    # its plan then, as at any stop: `plan_left` for a plan not completed, nothing else.
    # With the default options a claim can also read a plan behind the noted rev for the
    # whole wait (docs/multi-host.md: 1 soak in 10): it goes on, and every step still runs
    # exactly once (above); told in the summary line.
    behind = [e for e in seen if e["event"] == "claim_read_behind"]
    odd = [e for e in seen if e["event"] in (
        "orphan_recovered", "orphan_step", "claim_lost_to_fence", "claim_read_behind",
        "plan_left", "lock_lost") and not (default and e["event"] == "plan_left"
                                           and e["plan"] not in ids)
           and not (default and e["event"] == "claim_read_behind")]
    assert not odd, (odd, [e for e in seen if e.get("plan") in {o.get("plan") for o in odd}],
                     "\n".join(line for ds in daemons.values() for d in ds
                               for line in d.log().splitlines()
                               if any(o.get("plan", "?") in line for o in odd)))
    waited = [e for e in seen if e["event"] == "write_waiting"]
    print(f"\nsoak ({volume}): {len(ids)} of {n_plans} plans x {STEPS} steps, {len(HOSTS)} hosts x "
          f"{DAEMONS_PER_HOST} daemons: {took:.1f} s; plans per host {dict(by_host)}; "
          f"writes waited out: {len(waited)} {[e.get('error') for e in waited][:5]}; "
          f"claims read behind: {[(e['plan'], e['rev'], e['noted_rev']) for e in behind]}")


def test_every_daemon_of_one_host_killed_mid_step_the_others_take_over(
        bed, shared_vault, tmp_path, recommended_volume):
    n_plans = 12
    view = bed.path("h1", shared_vault)
    marks = view / "marks"
    marks.mkdir()
    go = shared_vault / "go"
    ids = [f"P-P-{n:03d}" for n in range(1, n_plans + 1)]
    wait_go = f'while [ ! -e {go} ]; do sleep 0.05; done'
    steps = [step_command(shared_vault / "marks"),
             step_command(shared_vault / "marks", wait_go),
             step_command(shared_vault / "marks")]
    daemons = start_daemons(bed, shared_vault, tmp_path)
    write_plans(view / "P" / "plans", ids, steps)
    events_path = view / ".modulatio" / "events.jsonl"

    def in_step_1() -> dict[int, str]:
        """daemon (host, pid) -> the plan whose step 1 it has started."""
        return {(e["host"], e["pid"]): e["plan"] for e in events(events_path)
                if e.get("event") == "step_started" and e.get("index") == 1}

    # Every daemon is in step 1 of a plan (one plan at a time each), waiting for `go`.
    wait_for(lambda: len(in_step_1()) == len(HOSTS) * DAEMONS_PER_HOST, 90,
             "every daemon in a step", interval=0.2, diag=lambda: logs(daemons))
    killed = {in_step_1()[("h1", d.inner_pid)] for d in daemons["h1"]}
    assert len(killed) == DAEMONS_PER_HOST
    # `step_started` is told before the step's process starts: its mark says it runs.
    wait_for(lambda: all(("h1" in {h for h, _ in runs(marks).get((p, 1), [])})
                         for p in killed), 30, "h1's steps to leave their marks",
             interval=0.1, diag=lambda: logs(daemons))
    for d in daemons["h1"]:
        d.signal(signal.SIGKILL)
    for d in daemons["h1"]:
        assert d.wait(30) in (-signal.SIGKILL, 128 + signal.SIGKILL)
    # Each step's shell died with its daemon (its dead man's switch), but not what it started
    # (here flock and the shell waiting for `go`): that holds the plan's lock descriptor,
    # so the plan stays locked, and no other host starts the step beside it, until the
    # rest of the step ends (child.py).
    assert bed.processes("h1")
    bed.run_on("h2", "touch", go)
    wait_for(lambda: set(statuses(view / "P" / "plans", ids).values()) == {"completed"},
             120, "every plan completed", interval=0.5,
             diag=lambda: f"{statuses(view / 'P' / 'plans', ids)}\n{logs(daemons)}")

    wait_for(lambda: not bed.processes("h1"), 30, "the rest of h1's steps to end")
    assert concurrent(marks) == []
    ran = runs(marks)
    assert set(ran) == {(p, i) for p in ids for i in range(STEPS)}
    for (plan_id, index), done in ran.items():
        if plan_id in killed and index == 1:
            # Run twice: on h1 until killed, then once more elsewhere, with a higher token.
            assert len(done) == 2, (plan_id, index, done)
            (first_host, first), (then_host, then) = sorted(done, key=lambda r: r[1])
            assert first_host == "h1" and then_host != "h1" and then > first
        else:
            assert len(done) == 1, (plan_id, index, done)
    seen = events(events_path)
    recovered = {e["plan"]: e for e in seen if e["event"] == "orphan_recovered"}
    assert set(recovered) == killed
    assert {e["host"] for e in recovered.values()} <= {"h2", "h3"}
    assert {e["plan"] for e in seen if e["event"] == "orphan_step"} == killed
    # h1 ran only the first two steps of the plans it held, nothing after the kill.
    assert {(e["plan"], e["index"]) for e in seen
            if e["event"] == "step_started" and e["host"] == "h1"} == {
        (p, i) for p in killed for i in (0, 1)}


def test_event_lines_appended_from_three_hosts_at_once_are_whole(bed, shared_vault):
    # Without the flock of store/fs/ append, 18-26 of these 1500 lines tore (O_APPEND
    # keeps one kernel's writers apart, not two hosts' clients).
    n = 500
    script = Path(__file__).with_name("append_events.py")
    writers = [bed.start(h, PY, script, shared_vault, str(n)) for h in HOSTS]
    assert [w.wait(120) for w in writers] == [0] * len(HOSTS)
    seen = [e for e in events(bed.path("h2", shared_vault / ".modulatio" / "events.jsonl"))
            if e["event"] in ("soak_line", "TORN LINE")]
    assert [e for e in seen if e["event"] == "TORN LINE"] == []
    assert Counter(e["host"] for e in seen) == {h: n for h in HOSTS}

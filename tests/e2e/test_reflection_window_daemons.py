"""A long run with a small reflection window: entries move out of the plan file into
`<plan-id>.reflection_log.jsonl` (docs/plan-file.md, "The reflection log") while real
daemons run the plan and are SIGKILLed at random moments, and `plan show` and
`plan rerun` read the moved entries.

Checked: the whole log (the file's first `reflection_archived.entries` lines, then the
plan's window) holds each step's attempts once, in order, one `ok` per step; the plan
file never holds more than the window; a step retried past the window gets exactly its
retries (its earlier attempts are counted from the file).
"""

from __future__ import annotations

import json
import random

import pytest
from helpers import cli, modulatio, plan, write_plan
from waiting import wait_for

from modulatio_d.store import reflections

pytestmark = pytest.mark.timeout(120)
PID = "P-P-001"
WINDOW = 2


@pytest.fixture
def windowed(dvault):
    config = dvault.root / ".modulatio" / "config.yaml"
    config.write_text(config.read_text() + f"defaults:\n  reflection_window: {WINDOW}\n")
    return dvault


def test_a_long_run_moves_entries_out_and_plan_show_reads_them(windowed):
    steps = [{"run": "true"}, {"run": "false", "retries": 4, "on_failure": "continue"},
             *({"run": "true"} for _ in range(8))]
    write_plan(windowed, PID, steps)
    done = modulatio("daemon", "--vault", windowed.root, "--once", "--allow-root")
    assert done.returncode == 0, done.stderr
    p = plan(windowed, PID)
    assert p.status.value == "completed" and len(p.reflection_log) <= WINDOW
    shown = cli(windowed, "plan", "show", PID, "--json")
    log = json.loads(shown.out)["reflection_log"]
    # step 2 ran 1 + 4 retries, though the window holds 2: its attempts were counted
    assert [(e["index"], e["attempt"]) for e in log] == [
        (0, 1), *((1, n) for n in range(1, 6)), *((i, 1) for i in range(2, 10))]
    lines = reflections.path_of(p.path).read_text().splitlines()
    assert [json.loads(line) for line in lines] == log[:p.archived]
    assert p.reflection_archived["duration_s"] == pytest.approx(
        sum(e["duration_s"] for e in log[:p.archived]), abs=0.01)
    # a new run: the whole log and the file go to the old run's folder
    cli(windowed, "plan", "rerun", PID)
    history = p.path.with_suffix(".runs") / "run-1"
    kept = json.loads((history / "reflection_log.json").read_text())["reflection_log"]
    assert kept == log
    assert not reflections.path_of(p.path).exists()
    again = plan(windowed, PID)
    assert again.reflection_archived is None and again.reflection_log == []


def test_sigkill_at_random_moments_loses_and_doubles_no_entry(windowed, daemons):
    rng = random.Random(1212)
    steps = [{"title": f"step {i}", "run": windowed.step()} for i in range(16)]
    write_plan(windowed, PID, steps)
    d = daemons(tick=0.2)
    kills = 0
    while kills < 6:
        at = plan(windowed, PID).current_index
        if at >= 13:
            break
        # killed as soon as the plan moved on by one or two steps: inside the next
        # step's start, its bookkeeping or a move, wherever the polling lands
        ahead = at + rng.randint(1, 2)
        wait_for(lambda n=ahead: plan(windowed, PID).current_index >= n, 20, "progress",
                 interval=0.001, diag=d.log)
        d.kill()
        kills += 1
        d = daemons(tick=0.2)
    wait_for(lambda: plan(windowed, PID).status.value == "completed", 60, "completed",
             diag=d.log)
    p = plan(windowed, PID)
    assert len(p.reflection_log) <= WINDOW
    log = reflections.whole(p)
    oks = [e["index"] for e in log if e["outcome"] == "ok"]
    assert oks == list(range(16))  # one each, in order: none lost, none doubled
    pairs = [(e["index"], e["attempt"]) for e in log]
    assert len(set(pairs)) == len(pairs) and pairs == sorted(pairs)

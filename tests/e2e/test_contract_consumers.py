"""Issue 9, item 8, the consumers' half: nothing that consumes what the readers accept
may raise on it.

- The commands people and monitors run (status, metrics, validate, plan list and
  show, cron list, ticket list, heartbeat) on a vault holding a hostile plan, or
  hostile cron entries, tickets, config, usage, events and heartbeats: exit 0 or 1
  with a reason, never an exception or "system error".
- A real Daemon (`daemon --once`, in this process, every child replaced by
  a stand-in: contract_adapters.run_daemon_once) on the same: it claims, budgets,
  prepares and "runs" every step of a plan the reader accepted, or refuses it;
  it never raises, never records `plan_crashed` (the per-plan guard of the
  issue's item 1 must not be what saves it: the consumers must not crash), never
  writes a plan file that no longer parses, and the good plan beside the
  hostile one is completed.

Slower than the readers' half (tests/unit/test_contract_readers.py): a command
run is some 10 ms and a daemon run about 0.3 s, so the examples are fewer.
Derandomized; the issue's reproducers are explicit examples, so a property fails
at once while its defect stands (xfail(strict=True) naming it).
"""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

import hostile_files as hf
import pytest
from contract_adapters import (
    JSON_KINDS,
    READERS,
    Vaults,
    commands,
    production_stack,
    read,
    run_daemon_once,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modulatio_d.core.errors import BadFile
from modulatio_d.store.plan_file import read_plan

CONSUMERS = settings(max_examples=20, derandomize=True, database=None, deadline=None,
                     print_blob=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.large_base_example,
                                            HealthCheck.filter_too_much,
                                            HealthCheck.function_scoped_fixture])
GENERAL = hf.Docs(hf.value())
JSON_FILES = {"usage": hf.USAGE, "events": hf.EVENT, "heartbeat": hf.HEARTBEAT,
              "record": hf.RECORD}
GOOD = "P/plans/P-P-002.md"
GOOD_PLAN = ("---\nid: P-P-002\nstatus: approved\npriority: -5\nsub_objectives:\n"
             "  - {title: ok, run: 'true'}\n---\n")
HOSTILE_PLAN = READERS["plan"][0]


def plan_example(*lines: str) -> str:
    return "---\nid: P-P-001\nstatus: approved\npriority: 9\n" + "".join(
        line + "\n" for line in lines) + "---\n"


# Issue 9 defect 1, each a plan the reader accepts today and the daemon dies on.
DAEMON_KILLERS = {
    "reflection_log items that are no maps": plan_example(
        "sub_objectives: [{title: a, run: 'true'}]", "reflection_log: [1, 2]"),
    "a duration_s that is no number": plan_example(
        "budget: {wall_clock: 1h}", "sub_objectives: [{title: a, run: 'true'}]",
        "reflection_log: [{duration_s: abc}]"),
    "a NUL in run (list)": plan_example('sub_objectives: [{title: a, run: ["echo", "a\\0b"]}]'),
    "a NUL in run (string)": plan_example('sub_objectives: [{title: a, run: "echo a\\0b"}]'),
    "a NUL in env": plan_example('sub_objectives: [{title: a, run: "true", env: {A: "x\\0y"}}]'),
    "= in an env name": plan_example('sub_objectives: [{title: a, run: "true", env: {"A=B": x}}]'),
    "timeout: .nan": plan_example("sub_objectives: [{title: a, run: 'true', timeout: .nan}]"),
    "a claim token of 1e400": plan_example("sub_objectives: [{title: a, run: 'true'}]",
                                           "claim: {token: 1e400}"),
    "execution_started_at in year 1": plan_example(
        "sub_objectives: [{title: a, run: 'true'}]",
        "execution_started_at: 0001-01-01T00:00:00+01:00"),
    # Found by this suite, the same kind of defect: UnicodeEncodeError from Popen.
    "a lone surrogate in run": plan_example('sub_objectives: [{title: a, run: ["echo", '
                                            '"\\ud800"]}]'),
}


def parses(vault, rel: str) -> bool:
    try:
        with production_stack():
            read_plan(vault, vault.root / rel)
        return True
    except BadFile:
        return False


def daemon_once(vault) -> list[dict]:
    """Run the daemon and check what must hold whatever the vault holds."""
    before = parses(vault, HOSTILE_PLAN) if (vault.root / HOSTILE_PLAN).exists() else False
    events = run_daemon_once(vault)
    crashed = [e for e in events if e.get("event") == "plan_crashed"]
    assert not crashed, f"a consumer crashed on what the reader accepted: {crashed}"
    good = read_plan(vault, vault.root / GOOD).plan
    assert good.status.value == "completed", (good.status, good.last_error)
    if before:
        assert parses(vault, HOSTILE_PLAN), "the daemon wrote a plan file that does not parse"
    return events


# --- the commands ------------------------------------------------------------------------

@CONSUMERS
@given(GENERAL.plan("P-P-001"))
@example(plan_example("status: executing", "sub_objectives: [a]", "reflection_log: [1, 2]")
         .replace("status: approved\n", ""))
@example(plan_example("sub_objectives: [a]", "reflection_log:",
                      "  - {index: 0, outcome: ok, started_at: 2025-11-04T10:00:00Z}"))
def test_commands_never_raise_on_a_plan(tmp_path_factory, text):
    commands(Vaults(tmp_path_factory.mktemp("c")).new({HOSTILE_PLAN: text, GOOD: GOOD_PLAN}))


def other_files():
    return st.fixed_dictionaries({
        READERS["cron"][0]: GENERAL.cron("P-C-001"),
        READERS["ticket"][0]: GENERAL.ticket("P-P-001-T-01", "P-P-001"),
        READERS["config"][0]: GENERAL.config(),
        **{READERS[k][0]: hf.json_lines(JSON_FILES[k]) for k in JSON_KINDS}})


HUGE_PID_HEARTBEAT = {READERS["heartbeat"][0]: f'{{"pid": {10 ** 30}, "host": '
                      f'"{socket.gethostname()}", "last_tick": "2025-11-04T10:00:00Z"}}\n'}


@CONSUMERS
@given(other_files())
@example(HUGE_PID_HEARTBEAT)
@example({READERS["ticket"][0]: "---\nid: P-P-001-T-01\nplan: P-P-001\n"
                                "created_at: 9999-12-31T23:59:59-01:00\n---\n"})
def test_commands_never_raise_on_the_other_files(tmp_path_factory, files):
    # The plan the commands name (and the ticket's plan) is a good one here: what is on
    # trial is every other file.
    commands(Vaults(tmp_path_factory.mktemp("o")).new(
        {**files, GOOD: GOOD_PLAN, HOSTILE_PLAN: plan_example("sub_objectives: [a]")}))


# --- the daemon --------------------------------------------------------------------------

@CONSUMERS
@given(GENERAL.plan("P-P-001"))
@example(DAEMON_KILLERS["reflection_log items that are no maps"])
@example(DAEMON_KILLERS["a lone surrogate in run"])
def test_the_daemon_runs_or_refuses_every_plan(tmp_path_factory, text):
    daemon_once(Vaults(tmp_path_factory.mktemp("d")).new({HOSTILE_PLAN: text, GOOD: GOOD_PLAN}))


@pytest.mark.parametrize("name", DAEMON_KILLERS)
def test_the_daemon_survives_each_poison_plan_of_the_issue(tmp_path, name):
    daemon_once(Vaults(tmp_path).new({HOSTILE_PLAN: DAEMON_KILLERS[name], GOOD: GOOD_PLAN}))


@CONSUMERS
@given(other_files())
@example({READERS["config"][0]: "defaults: {timeout: .nan}\n"})
def test_the_daemon_survives_the_other_files(tmp_path_factory, files):
    daemon_once(Vaults(tmp_path_factory.mktemp("f")).new({**files, GOOD: GOOD_PLAN}))


def test_the_generators_reach_the_consumers(tmp_path, monkeypatch):
    """Guard against a vacuous contract: most generated plans are accepted by the reader,
    some are refused, and every status and the keys the daemon reads do occur."""
    seen: Counter = Counter()
    vaults = Vaults(tmp_path)
    # Hypothesis also draws the literals of the code under test (of every module of the
    # package loaded), so a new module anywhere moved these counts: without them, the
    # reach measured is the generator's alone.
    from hypothesis.internal.conjecture import providers
    from hypothesis.internal.constants_ast import Constants

    monkeypatch.setattr(providers, "_get_local_constants", Constants)
    monkeypatch.setattr(providers, "CONSTANTS_CACHE", {})

    # Derandomized, and many examples: the examples drawn still differ with what ran before
    # in the session (hypothesis state), and this checks the generator's reach, not a seed.
    @settings(CONSUMERS, max_examples=200, derandomize=True, database=None)
    @given(GENERAL.plan("P-P-001"))
    def look(text):
        plan = read("plan", vaults.new({HOSTILE_PLAN: text}))
        seen["accepted" if plan is not None else "refused"] += 1
        if plan is not None:
            seen[plan.status.value] += 1
            seen.update(k for k in ("reflection_log", "claim", "in_flight", "budget")
                        if plan.data.get(k))

    look()
    assert seen["accepted"] >= 20 and seen["refused"] >= 5, seen
    assert seen["approved"] and seen["executing"] and seen["paused"], seen
    assert all(seen[k] for k in ("reflection_log", "claim", "in_flight", "budget")), seen


def test_run_daemon_once_runs_steps_as_the_daemon_would(tmp_path):
    """The adapter itself: a plan of every executor completes, its steps prepared and
    started (as the stand-in), their reflection entries written."""
    vault = Vaults(tmp_path).new({GOOD: GOOD_PLAN, HOSTILE_PLAN: plan_example(
        "sub_objectives:", "  - {title: shell, run: 'exit 3'}", "  - {title: argv, run: [a, b]}",
        "  - {title: call, call: 'mod.path:fn'}", "  - an objective for the mock agent")})
    events = daemon_once(vault)
    plan = read_plan(vault, vault.root / HOSTILE_PLAN).plan
    assert plan.status.value == "completed"
    assert [e["outcome"] for e in plan.reflection_log] == ["ok"] * 4
    assert sum(e.get("event") == "step_started" for e in events) == 5
    assert Path(vault.root / "P/plans/P-P-001.runs").is_dir()

"""A command's output is the same whether its rows come from the cache (warm), from
reading each file in turn (cold), or from the pool of ops/parallel.py (cold, many files):
`plan list` (status filters, the --json rows), `validate` and the survey of `status` and
`metrics`, on vaults of plans of every status and of broken ones. The pool here runs in
this process (the unit lane forks nothing); tests/e2e/test_parallel_parse.py runs the
same with real workers."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from modulatio_d.ops import parallel, render, validate
from modulatio_d.ops.survey import survey
from modulatio_d.store import rowcache
from modulatio_d.store.vault import Vault

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STEPS = "sub_objectives:\n  - {run: 'true'}\n  - {objective: Write, agent: writer}\n"
TEXTS = [
    "status: draft\n" + STEPS,
    "status: approved\npriority: 7\n" + STEPS,
    "status: paused\n" + STEPS + "current_index: 1\n",
    "status: completed\n" + STEPS + "current_index: 2\n",
    "status: failed\nlast_error: boom\n" + STEPS,
    "status: draft\ncwd: nowhere\n" + STEPS,
    "status: draft\nafter: [X-P-404]\n" + STEPS,
    "status: draft\nreflector: no-such-judge-here\n" + STEPS,
    "status: draft\nsub_objectives:\n  - {objective: Write, agent: nobody}\n",
    "status: draft\nsub_objectives: [unclosed\n",  # broken YAML
    "status: sideways\n" + STEPS,  # not a status
    "status: approved\npriority: high\n" + STEPS,  # a bad value
    "status: draft\n",  # no steps
    "status: executing\n" + STEPS,  # no daemon holds it: an orphan
    "status: approved\nnot_before: 2030-01-01T00:00:00Z\n" + STEPS,  # waiting
    "title: [no status\n",  # nothing to peek
]


class InProcessPool:
    """What parallel.start gives, without a fork: imap in this process."""

    started: list[int] = []

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.started.append(jobs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap(self, fn, chunks):
        return map(fn, chunks)


def outputs(vault: Vault) -> list:
    lists = [render.list_plans(vault, status=s)
             for s in (None, "paused", "invalid")]
    return [lists, [str(p) for p in validate.validate(vault, {"PATH": "/usr/bin:/bin"})],
            survey(vault, NOW).as_dict()]


@settings(max_examples=4, deadline=None)
@given(st.lists(st.sampled_from(range(len(TEXTS))), min_size=1, max_size=8)
       .map(lambda picks: [*range(len(TEXTS)), *picks]),  # every kind, then more
       st.integers(1, 4))
def test_warm_cold_and_pooled_runs_give_the_same_output(picks, chunk):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "vault"
        (root / ".modulatio").mkdir(parents=True)
        (root / ".modulatio" / "config.yaml").write_text("agents:\n  writer: {use: mock}\n")
        for project in ("P", "Q"):
            (root / project / "plans").mkdir(parents=True)
        for n, pick in enumerate(picks):
            project = "PQ"[n % 2]
            plan_id = f"{project}-P-{n:03d}"
            (root / project / "plans" / f"{plan_id}.md").write_text(
                f"---\nid: {plan_id}\ntitle: Plan {n}\n{TEXTS[pick]}---\nBody.\n")
        cache = Path(tmp) / "cache"
        mp = _Patch()
        try:
            mp.set(rowcache, "RACY_S", -1.0)  # files made just now are cached
            mp.env("XDG_CACHE_HOME", str(cache))
            mp.set(parallel, "start", InProcessPool)
            mp.set(parallel, "CHUNK", chunk)
            cold = outputs(Vault(root))  # a file at a time: below MIN_FILES
            assert outputs(Vault(root)) == cold  # warm: every row from the cache
            shutil.rmtree(cache)
            mp.set(parallel, "MIN_FILES", 1)
            mp.set(parallel, "workers", lambda count: 2)
            InProcessPool.started.clear()
            assert outputs(Vault(root)) == cold  # pooled
            assert InProcessPool.started == [2] * 5  # 3 lists, validate, survey
            assert outputs(Vault(root)) == cold  # warm after a pooled run
        finally:
            mp.undo()


class _Patch:
    """monkeypatch for one hypothesis example (the fixture is per test, not per example)."""

    def __init__(self):
        import pytest
        self.mp = pytest.MonkeyPatch()

    def set(self, obj, name, value):
        self.mp.setattr(obj, name, value)

    def env(self, name, value):
        self.mp.setenv(name, value)

    def undo(self):
        self.mp.undo()


def test_rows_come_back_in_order_with_one_tick_each(monkeypatch):
    monkeypatch.setattr(parallel, "start", InProcessPool)
    monkeypatch.setattr(parallel, "CHUNK", 3)
    ticks = []
    got = list(parallel.rows([f"p{i}" for i in range(10)], lambda p: {"p": p},
                             lambda: ticks.append(1), jobs=2))
    assert got == [(f"p{i}", {"p": f"p{i}"}) for i in range(10)] and len(ticks) == 10


def test_a_pool_that_cannot_start_is_one_process(monkeypatch):
    def refuse(jobs):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(parallel, "start", refuse)
    assert list(parallel.rows(["a", "b"], str.upper, jobs=2)) == [("a", "A"), ("b", "B")]


def test_few_files_or_one_core_is_one_process(monkeypatch):
    assert parallel.workers(parallel.MIN_FILES - 1) == 1
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0})
    assert parallel.workers(parallel.MIN_FILES) == 1
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1})
    assert parallel.workers(parallel.MIN_FILES) == 2


def test_a_process_with_threads_does_not_fork(monkeypatch):
    import threading

    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threading, "active_count", lambda: 2)  # the HTTP API's server
    assert parallel.workers(parallel.MIN_FILES) == 1


def test_validate_names_the_daemons_built_in_agents_and_group():
    from modulatio_d.daemon.executors import agent

    assert validate.BUILT_IN_AGENTS == set(agent.BUILTINS)
    assert validate.AGENT_GROUP == agent.GROUP

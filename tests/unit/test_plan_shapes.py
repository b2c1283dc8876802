"""Every key of a plan that the daemon or a command reads, its own keys included, given
every wrong shape from a catalogue: the reader refuses it with a BadFile naming the file
and line, or accepts it, and then no consumer raises on it (the claim, the daemon's own
write read back, the runner's sums and log names, each step's argv and environment,
`plan show`, `plan list`, the status rows).

The keys are not listed by hand: they are every path into a plan that uses every key
(BASE), so a key added to it is covered by every shape at once.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from ruamel.yaml import YAML

from modulatio_d.core import markdown
from modulatio_d.core.checks import MAX_COUNT, MAX_TEXT_BYTES
from modulatio_d.core.errors import BadFile, StepError
from modulatio_d.core.plan import PlanStatus, parse_plan
from modulatio_d.core.verdict import FAILURES
from modulatio_d.daemon.attempt import step_files
from modulatio_d.daemon.budget import Budget
from modulatio_d.daemon.executors import StepContext, launch
from modulatio_d.daemon.writeback import PlanWriter
from modulatio_d.ops import plan_progress, render
from modulatio_d.store.config import Config
from modulatio_d.store.plan_file import _as_yaml_values

T = "2025-11-04T10:00:00Z"
BASE: dict = {
    "id": "P-1", "title": "A plan", "status": "executing", "priority": 5,
    "sub_objectives": [
        {"title": "build", "run": ["echo", "a"], "timeout": "10m", "retries": 1,
         "on_failure": "pause", "rerun_after_crash": True, "cwd": ".", "env": {"A": "x"}},
        {"objective": "write it", "agent": "default"},
        "a text step",
        {"call": "tools.mod:main", "title": "publish"},
        {"run": "echo b"},
    ],
    "budget": {"tokens": 100, "cost_usd": 1.5, "wall_clock": "1h"},
    "cwd": ".", "reflector": "true",
    "approved_at": T, "execution_started_at": T, "completed_at": T,
    "current_index": 1, "rev": 3, "last_error": "step 0 failed",
    "claim": {"host": "h", "pid": 12, "token": 2, "claimed_at": T},
    "in_flight": {"index": 1, "attempt": 1, "token": 2, "started_at": T},
    "reflection_log": [{"index": 0, "title": "build", "attempt": 1, "outcome": "ok",
                        "exit": "exit 0", "started_at": T, "ended_at": T, "duration_s": 1.5,
                        "decision": "continue", "summary": "done", "log": "P-1.runs/0-1.log",
                        "token": 2}],
}


class Raw(str):
    """YAML text put in as it is."""


DEEP = "[" * 70 + "]" * 70
SHAPES = {
    "null": "null", "list": "[1, 2]", "map": "{a: 1}", "text": '"text"', "empty text": '""',
    "bool": "true", "negative": "-1", "float": "1.5", "huge int": "9" * 30,
    "2**63": str(2 ** 63), "nan": ".nan", "inf": ".inf", "NUL text": '"a\\0b"',
    "lone surrogate": '"\\ud800"', "deep": DEEP,
    "time out of range": "0001-01-01T00:00:00+01:00", "time": "2025-11-04T10:00:00Z",
}
# Each shape loaded once; each case puts one into BASE's loaded document in place
# (and back), so the matrix costs a parse_plan per case, not a YAML load.
SHAPE_VALUES = {name: YAML(typ="rt").load(f"v: {raw}")["v"] for name, raw in SHAPES.items()}


def paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every path to every node of `value` (not the root)."""
    out = []
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        out.append((*prefix, key))
        out += paths(child, (*prefix, key))
    return out


def emit(value: object) -> str:
    """`value` as YAML flow text (JSON is YAML), Raw parts put in as they are."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {emit(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(emit(v) for v in value) + "]"
    return json.dumps(value)


def plan_text(data: dict) -> str:
    return "---\n" + "".join(f"{k}: {emit(v)}\n" for k, v in data.items()) + "---\nbody\n"


SKELETON = {"id": "P-1", "status": "executing", "sub_objectives": [{"run": "true"}]}


def with_value(path: tuple, raw: str) -> dict:
    """A plan of SKELETON and BASE's key `path[0]`, the node at `path` replaced by the YAML
    text `raw` (the keys that matter to it only: a YAML load costs milliseconds)."""
    data = json.loads(json.dumps({**SKELETON, path[0]: BASE[path[0]]}))
    if path[0] == "current_index":
        data["sub_objectives"] = BASE["sub_objectives"]
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = Raw(raw)
    return data


def parse_with(doc, path: tuple, value: object):
    """parse_plan of `doc` with the node at `path` replaced by `value`: a Plan or the
    BadFile (nothing else)."""
    node = doc.data
    for key in path[:-1]:
        node = node[key]
    before = node[path[-1]]
    node[path[-1]] = value
    try:
        return parse_plan(doc, expected_id="P-1")
    except BadFile as e:
        assert str(e).startswith(f"{doc.path}:"), str(e)
        assert len(str(e)) < 2000, "a message must stay readable"
        return e
    finally:
        node[path[-1]] = before


def read(path: Path, text: str):
    """The plan as the daemon's reader sees it: a Plan, or the BadFile (nothing else)."""
    try:
        return parse_plan(markdown.load(path, text), expected_id=path.stem)
    except BadFile as e:
        assert str(e).startswith(f"{path}:"), str(e)  # the file, and a line where known
        assert len(str(e)) < 2000, "a message must stay readable"
        return e


def consume(vault, path: Path, plan, run_cli) -> None:
    """Everything the daemon and the commands do with an accepted plan, short of running it."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    token = plan.last_token + 1  # the claim
    assert 1 <= token <= MAX_COUNT + 1
    claim = {"host": "h", "pid": 1, "token": token, "claimed_at": now}
    own = {**plan.own_keys(), "status": PlanStatus.EXECUTING.value, "claim": claim,
           "rev": plan.rev + 1, "execution_started_at": plan.execution_started_at or now}
    written = markdown.set_keys(path.read_text(), _as_yaml_values(own), path)
    ended = markdown.set_keys(written, _as_yaml_values({"status": "completed",
                                                        "completed_at": now, "claim": None}))
    again = parse_plan(markdown.load(path, ended), path.stem)  # its own writes, read back
    # the claim is gone; the tokens attempts ran with stay (the log, in_flight)
    assert again.claim is None and again.last_token == replace(plan, claim=None).last_token
    # a time written unquoted comes back as the daemon's text
    assert render._jsonable(again.reflection_log) == render._jsonable(plan.reflection_log)
    budget = Budget(path)
    budget.exhausted(plan)
    budget.room_after(plan, plan.reflection_log)
    for index in range(plan.total):
        tail = PlanWriter.tail(SimpleNamespace(plan=plan, held=SimpleNamespace(path=path)),
                               index)
        sum(1 for e in tail if e.get("token") == token and e.get("outcome") in FAILURES)
    flight = plan.in_flight or {}
    log, _ = step_files(path.with_suffix(".runs"), flight.get("index", plan.current_index),
                        flight.get("attempt", 1))
    assert log.parent == path.with_suffix(".runs")
    for step in plan.sub_objectives:
        ctx = StepContext(vault.root, "P", plan, step, 1, token, path.with_suffix(".u"),
                          Config(), {"PATH": "/usr/bin:/bin"})
        try:
            started = launch(ctx)
        except StepError:
            continue  # a folder that is not there: an `error` attempt, not a crash
        for arg in started.argv:  # what Popen checks before it forks
            assert "\0" not in arg and len(os.fsencode(arg)) <= 2 * MAX_TEXT_BYTES
        for name, value in started.env.items():
            assert "=" not in name and "\0" not in name + value
            os.fsencode(name), os.fsencode(value)
    json.dumps(render.show_plan(vault, plan.id))
    render.plan_row(plan, "P")
    plan_progress.executing(plan, "P", now)
    plan_progress.paused(plan, "P")
    shown = run_cli("plan", "show", plan.id, "--vault", vault.root)
    assert shown.code == 0, shown.err


KEY_PATHS = paths(BASE)


@pytest.fixture(scope="module")
def base_doc():
    return markdown.load(Path("P-1.md"), plan_text(BASE))


@pytest.mark.parametrize("key", KEY_PATHS, ids=lambda p: ".".join(map(str, p)))
def test_a_wrong_shape_is_refused_or_harmless(key, base_doc, request):
    consumed = set()
    for shape, value in SHAPE_VALUES.items():
        if isinstance(parse_with(base_doc, key, value), BadFile):
            continue
        kind = (type(value), value == "" or "\0" in value if isinstance(value, str) else None)
        if kind in consumed:
            continue  # the consumers saw a value of this kind at this key already
        consumed.add(kind)
        # Accepted by the parser: now the whole way, from the text, as the daemon reads it.
        text = plan_text(with_value(key, SHAPES[shape]))
        vault = request.getfixturevalue("vault")
        path = vault.root / "P" / "plans" / "P-1.md"
        plan = read(path, text)
        if isinstance(plan, BadFile):
            continue  # refused by the loader (an out-of-range time, nesting)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        try:
            consume(vault, path, plan, request.getfixturevalue("run_cli"))
        except Exception as e:
            raise AssertionError(f"{shape} at {key} was accepted, then raised") from e


@pytest.mark.parametrize("name", ["A=B", "1A", "", "A\\0", "A B", "é"])
def test_an_env_name_no_process_takes_is_refused(name, tmp_path):
    data = json.loads(json.dumps(BASE))
    data["sub_objectives"][0]["env"] = {name: "x"}
    e = read(tmp_path / "P-1.md", plan_text(data).replace('"A\\\\0"', '"A\\0"'))
    assert isinstance(e, BadFile) and "env name" in str(e) and ":6:" in str(e)


TEXT_KEYS = [p for p in KEY_PATHS if p[0] != "reflection_log" and (
    p[-1] in ("title", "objective", "run", "cwd", "reflector", "A")
    or p[-2:] in (("run", 1), ("sub_objectives", 2)))]


@pytest.mark.parametrize("key", TEXT_KEYS, ids=lambda p: ".".join(map(str, p)))
def test_a_text_over_what_a_process_takes_is_refused(key, tmp_path):
    text = plan_text(with_value(key, json.dumps("x" * (MAX_TEXT_BYTES + 1))))
    e = read(tmp_path / "P-1.md", text)
    if key == ("title",):
        assert isinstance(e, BadFile) or e.title  # the plan's title goes to no process
    else:
        assert isinstance(e, BadFile) and "bytes, more than" in str(e), key


def test_the_matrix_covers_the_keys_the_daemon_reads():
    flat = {".".join(str(k) for k in p if not isinstance(k, int)) for p in KEY_PATHS}
    for key in ("claim.token", "in_flight.attempt", "reflection_log.duration_s",
                "sub_objectives.env.A", "sub_objectives.run", "sub_objectives.timeout",
                "budget.wall_clock", "execution_started_at", "current_index", "rev"):
        assert key in flat

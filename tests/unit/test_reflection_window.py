"""The plan file's window of reflection entries and the file of older ones beside it.

A plan keeps its latest entries in `reflection_log` (at most `window`); older ones move,
fsynced first, to `<plan-id>.reflection_log.jsonl`, counted by `reflection_archived`
(store/reflections.py). The whole log, file then window, must be every entry written,
in order, once: across a crash between the two writes, a person's edit of the window,
and a stale editor save.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modulatio_d.core import markdown
from modulatio_d.core.errors import BadFile
from modulatio_d.daemon.budget import Budget
from modulatio_d.store import atomic, owned_keys, reflections
from modulatio_d.store.config import load as load_config
from modulatio_d.store.plan_file import HeldPlan, read_plan

PLAN = """\
---
id: P-P-001
title: long   # a person's comment
status: executing
sub_objectives:
{steps}# the daemon's from here
current_index: 0
reflection_log: []
---
Body.
"""
STEPS = 40


def entry(n: int) -> dict:
    return {"index": n, "title": f"step {n}", "attempt": 1, "outcome": "ok",
            "duration_s": 1.5, "decision": "continue", "token": 1}


@pytest.fixture
def path(vault) -> Path:
    p = vault.plans_dir("P") / "P-P-001.md"
    p.parent.mkdir(parents=True)
    p.write_text(PLAN.format(steps="".join(f"  - {{run: 'true'}}  # {i}\n"
                                           for i in range(STEPS))))
    return p


def held_at(vault, path, window: int = 6) -> HeldPlan:
    held = HeldPlan(vault, path)
    held.window = window
    return held


def step(held: HeldPlan, n: int) -> None:
    """What the runner writes after step n: its entry, and the next index."""
    held.update({"reflection_log": [*held.plan.reflection_log, entry(n)],
                 "current_index": min(n + 1, STEPS)})


def whole(vault, path) -> list[dict]:
    return reflections.whole(read_plan(vault, path).plan)


def test_entries_move_out_in_order_and_the_plan_keeps_a_window(vault, path):
    held = held_at(vault, path)
    for n in range(20):
        step(held, n)
        plan = read_plan(vault, path).plan
        assert len(plan.reflection_log) <= 6
        assert whole(vault, path) == [entry(i) for i in range(n + 1)]
    plan = read_plan(vault, path).plan
    assert plan.reflection_archived == {"entries": plan.archived, "duration_s": 1.5 * plan.archived}
    assert plan.archived + len(plan.reflection_log) == 20 and plan.archived >= 14
    text = path.read_text()
    # a person's lines and comments stay; the window is one line an entry, as before
    assert "title: long   # a person's comment\n" in text and "  - {run: 'true'}  # 39\n" in text
    assert text.count("\n  - {index: ") == len(plan.reflection_log)
    # each line of the file beside the plan is an entry, written once
    lines = reflections.path_of(path).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [entry(i) for i in range(plan.archived)]
    # the record holds the window (a stale save gets it back), not the whole log
    assert owned_keys.load(held.record_path).keys["reflection_log"] == plan.reflection_log


def test_the_window_splice_gives_the_text_a_whole_render_gives(vault, path):
    held = held_at(vault, path)
    for n in range(9):
        step(held, n)
    text = path.read_text()
    log = read_plan(vault, path).plan.reflection_log
    new = [*log[3:], entry(9)]
    spliced = markdown.set_keys(text, {"reflection_log": markdown.Append(
        new, start=len(log) - 3, drop=3)})
    rendered = markdown.set_keys(text, {"reflection_log": new})
    assert spliced == rendered


def test_a_crash_between_the_two_writes_loses_and_doubles_nothing(vault, path, monkeypatch):
    held = held_at(vault, path)
    for n in range(6):
        step(held, n)
    before = path.read_bytes()

    def crash(point, target):
        if point == "applied":  # the entries are in the file beside it, the plan not yet
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(atomic, "seam", crash)
    with pytest.raises(KeyboardInterrupt):
        step(held, 6)
    monkeypatch.setattr(atomic, "seam", None)
    assert path.read_bytes() == before  # the plan as it was: the step is not recorded
    assert len(reflections.path_of(path).read_text().splitlines()) > 0  # the move's lines
    assert whole(vault, path) == [entry(i) for i in range(6)]  # ... ignored by readers
    # A new holder (a new daemon: it knows nothing of the file) goes on.
    held = held_at(vault, path)
    for n in range(6, 16):
        step(held, n)
    assert whole(vault, path) == [entry(i) for i in range(16)]
    plan = read_plan(vault, path).plan
    lines = reflections.path_of(path).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [entry(i) for i in range(plan.archived)]


def test_a_person_edits_the_window_at_the_current_rev(vault, path):
    held = held_at(vault, path)
    for n in range(8):
        step(held, n)
    plan = read_plan(vault, path).plan
    first = plan.archived
    text = path.read_text()
    # the person deletes the window's first entry and rewords the next one's summary
    lines = text.splitlines(keepends=True)
    items = [i for i, line in enumerate(lines) if line.startswith("  - {index: ")]
    lines[items[1]] = lines[items[1]].replace("title: step", "title: edited step")
    del lines[items[0]]
    path.write_text("".join(lines))
    held.refresh()  # the runner reads the plan again at its beats and between steps
    for n in range(8, 20):
        step(held, n)
    got = whole(vault, path)
    edited = {**entry(first + 1), "title": f"edited step {first + 1}"}
    assert got == [*(entry(i) for i in range(first)), edited,
                   *(entry(i) for i in range(first + 2, 20))]


def test_a_stale_save_gets_the_window_and_the_count_back(vault, path):
    held = held_at(vault, path)
    for n in range(4):
        step(held, n)
    old = path.read_text()  # an editor's buffer: no entry moved yet
    for n in range(4, 12):
        step(held, n)
    assert read_plan(vault, path).plan.archived > 0
    path.write_text(old.replace("title: long", "title: longer"))
    held = held_at(vault, path)  # a new holder reads the stale save and repairs it
    plan = read_plan(vault, path).plan
    assert plan.title == "longer" and plan.current_index == 12
    assert whole(vault, path) == [entry(i) for i in range(12)]
    for n in range(12, 20):
        step(held, n)
    assert whole(vault, path) == [entry(i) for i in range(20)]


def test_the_budget_and_the_record_log_stay_bounded_and_right(vault, path, monkeypatch):
    monkeypatch.setattr(owned_keys, "SKIP_FLOOR", 8)
    monkeypatch.setattr(owned_keys, "INLINE", 0)  # the log in its own file from the start
    held = held_at(vault, path, window=4)
    for n in range(40):
        step(held, n)
    plan = read_plan(vault, path).plan
    assert Budget(path)._running(plan.reflection_log) + plan.reflection_archived[
        "duration_s"] == pytest.approx(1.5 * 40)
    # the record's own log file skips the lines that left the window, and is cut back
    lines = owned_keys.log_path(held.record_path).read_text().splitlines()
    assert len(lines) <= len(plan.reflection_log) + 8 + 1
    assert owned_keys.load(held.record_path).keys["reflection_log"] == plan.reflection_log


def test_a_modulatio_shaped_plan_keeps_its_whole_log(vault):
    p = vault.plans_dir("M") / "M-P-001.md"
    p.parent.mkdir(parents=True)
    p.write_text("---\nproject_code: M\nstatus: executing\nsub_objectives:\n"
                 + "".join("  - {run: 'true'}\n" for _ in range(10))
                 + "current_index: 0\nreflection_log: []\n---\n")
    held = held_at(vault, p, window=4)
    for n in range(10):
        step(held, n)
    plan = read_plan(vault, p).plan
    assert plan.shape is not None and plan.archived == 0 and len(plan.reflection_log) == 10
    assert not reflections.path_of(p).exists()


def test_a_short_file_of_older_entries_is_told_not_guessed(vault, path):
    held = held_at(vault, path)
    for n in range(10):
        step(held, n)
    moved = reflections.path_of(path)
    moved.write_text("".join(moved.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(BadFile, match="fewer than the"):
        whole(vault, path)


@pytest.mark.parametrize("value, ok", [("200", True), ("2", True), ("1", False),
                                       ("yes", False), ("-5", False)])
def test_the_window_is_a_config_default(vault, value, ok):
    config = vault.root / ".modulatio" / "config.yaml"
    config.write_text(f"defaults:\n  reflection_window: {value}\n")
    if ok:
        assert load_config(config).reflection_window == int(value)
    else:
        with pytest.raises(BadFile, match="reflection_window"):
            load_config(config)

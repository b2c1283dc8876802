"""Issue 9, defect 4: a person's save landing in every window of the holder's write.

The plan holder (HeldPlan.update, through store/atomic.rewrite) writes a temp
file, compares the target with the bytes it last saw, swaps the temp in, and
keeps a snapshot of "what is on disk now" to splice its next write into. A
person's editor may save at any moment of that. Each test lands one save (an
editor buffer holding the file as it was just before the raced write, plus an
edit of the person's own: `priority: 77` and a line of body) in one window:

- before_swap:    the temp file is written, the bytes not yet compared;
- inside_swap:    compared, not yet swapped (only renameat2 can catch it);
- after_swap:     swapped in, before the holder takes its snapshot;
- after_snapshot: after update() returned, before the holder's next write.

then lets the holder go on (the runner's writes for three steps: in_flight,
then the step's reflection entry) and checks that nothing was lost: every reflection entry,
the claim with its fencing token, `execution_started_at`, the status, the
holder's view of its keys equal to the file's, and the person's edit kept.

The windows are reached by wrapping module-level functions of store/atomic
(WINDOWS below): the seam. If atomic.rewrite is restructured, point each
window at the function that now runs at that moment; the after_swap window
needs some call between the swap and the moment update() has its snapshot
(today `fsync_dir` of the folder).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modulatio_d.core import times
from modulatio_d.core.plan import DAEMON_KEYS
from modulatio_d.store import atomic
from modulatio_d.store.plan_file import HeldPlan, read_plan

# window -> (function of store/atomic to wrap, whether the save lands "before" or "after"
# the real call); None: the save lands after update() has returned.
WINDOWS: dict[str, tuple[str, str] | None] = {
    "before_swap": ("_open_temp", "after"),  # the plan's temp file (the record has none)
    "inside_swap": ("_exchange", "before"),
    "after_swap": ("fsync_dir", "before"),
    "after_snapshot": None,
}
# Today the snapshot is a fresh read after the swap: a save in that window becomes the
# holder's snapshot and its next write splices into the person's older text.

T0 = datetime(2025, 11, 4, 10, 0, tzinfo=UTC)
T1 = datetime(2025, 11, 4, 10, 5, tzinfo=UTC)
CLAIM = {"host": "h", "pid": 1, "token": 1, "claimed_at": T0}
PLAN = """\
---
id: P-P-001
title: Three steps
status: approved   # a person approved it
priority: 50
sub_objectives:
  - {title: one, run: "true"}
  - {title: two, run: "true"}
  - {title: three, run: "true"}
---
People's text.
"""


def entry(index: int) -> dict:
    return {"index": index, "title": f"step {index}", "attempt": 1, "outcome": "ok",
            "exit": "exit 0", "duration_s": 1.5, "decision": "continue", "token": 1}


def person_edit(text: str) -> str:
    """The person's change in their buffer: their own key and a line of body."""
    assert "priority: 50\n" in text
    return text.replace("priority: 50\n", "priority: 77\n") + "A note by the person.\n"


def editor_save(path: Path, text: str) -> None:
    """Saved the way vim does: a new file renamed over the plan."""
    tmp = path.with_name(".P-P-001.md.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Race:
    """Lands one editor save in a window of the next update() that is armed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path, window: str):
        self.path, self.window, self.armed, self.landed = path, window, False, False
        self.buffer = ""
        spec = WINDOWS[window]
        if spec is None:
            return
        name, when = spec
        real: Callable = getattr(atomic, name)

        def wrapped(*args, **kwargs):
            if self.armed and when == "before":
                self._land()
            result = real(*args, **kwargs)
            if self.armed and when == "after":
                self._land()
            return result

        monkeypatch.setattr(atomic, name, wrapped)

    def _land(self) -> None:
        self.armed = False
        editor_save(self.path, person_edit(self.buffer))
        self.landed = True

    def update(self, held: HeldPlan, changes: dict) -> None:
        """held.update(changes) with the save landing in the window."""
        self.buffer = self.path.read_text()  # the editor opened the file before this write
        if WINDOWS[self.window] is None:
            held.update(changes)
            self._land()
        else:
            self.armed = True
            held.update(changes)
        assert self.landed, f"the {self.window} window was never reached: update WINDOWS"


def comparable(plan) -> dict:
    """The daemon's keys and the status, times as the daemon writes them (rev aside)."""
    keys = {k: v for k, v in plan.own_keys().items() if k != "rev"}
    keys["status"] = plan.status.value
    return json.loads(json.dumps(keys, default=times.format_time))


def windows() -> list:
    out = []
    for w in WINDOWS:
        marks = []
        if w == "inside_swap" and atomic._renameat2 is None:
            marks.append(pytest.mark.skip(reason="no renameat2 here: that window stays open"))
        out.append(pytest.param(w, marks=marks))
    return out


@pytest.mark.parametrize("raced", ["claim", "log"])
@pytest.mark.parametrize("window", windows())
def test_a_save_in_any_window_of_a_write_loses_nothing(vault, monkeypatch, window, raced):
    path = vault.plans_dir("P") / "P-P-001.md"
    path.parent.mkdir(parents=True)
    path.write_text(PLAN)
    held = HeldPlan(vault, path)
    race = Race(monkeypatch, path, window)
    # The holder's writes for a claim and three steps, as the runner makes them.
    writes: list[dict] = [{"status": "executing", "claim": CLAIM, "execution_started_at": T0}]
    for i in range(3):
        writes.append({"in_flight": {"index": i, "attempt": 1, "token": 1, "started_at": T1}})
        writes.append({"current_index": i + 1, "reflection_log": [entry(j) for j in range(i + 1)],
                       "in_flight": None})
    # The claim, or a step's entry written onto a block list that already holds one.
    raced_at = {"claim": 0, "log": 4}[raced]
    for n, changes in enumerate(writes):
        if n == raced_at:
            race.update(held, changes)
            continue
        held.update(changes)
        # After each of its own writes the file says what the holder believes: a daemon
        # dying now must leave the next one a true checkpoint (no completed step re-run).
        assert comparable(read_plan(vault, path).plan) == comparable(held.plan), \
            f"after write {n}:\n{path.read_text()}"

    on_disk = read_plan(vault, path).plan
    assert [e["index"] for e in on_disk.reflection_log] == [0, 1, 2], path.read_text()
    assert on_disk.reflection_log == [entry(0), entry(1), entry(2)]
    assert on_disk.status.value == "executing", path.read_text()
    assert on_disk.current_index == 3
    assert on_disk.in_flight is None
    assert on_disk.claim is not None and on_disk.claim["token"] == 1, path.read_text()
    assert on_disk.execution_started_at == T0
    # The person's edit survives the repairs.
    assert on_disk.priority == 77, path.read_text()
    assert path.read_text().endswith("A note by the person.\n")
    assert set(DAEMON_KEYS) >= {"claim", "reflection_log"}  # the keys compared above

"""A person's save landing in every window of every write of a run (issue 9, defect 4).

A holder runs a two-step plan the way the runner does (claim, in_flight, the
step's reflection entry, ..., completed), re-reading the file between writes.
Once in the run, at one write and one point of it, a person saves: an old
buffer (the file before this write, or the approved file from before the
claim) or a fresh edit of what is on disk, renamed in or written in place. The
points are the seams of atomic.rewrite (before the temp file, after the check,
inside the exchange, after the swap before the snapshot, after the snapshot)
and between two writes. Whatever the window, the next reader (a restarted
daemon, the next claimer) must find every reflection entry, the person's title,
the one claim token and the daemon's status: no entry lost, no token reused,
no status regressed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modulatio_d.core import times
from modulatio_d.core.plan import PlanStatus
from modulatio_d.store import atomic, owned_keys
from modulatio_d.store.plan_file import HeldPlan, read_plan

NOW = datetime(2025, 11, 4, 10, 0, tzinfo=UTC)
PLAN = """\
---
id: P-P-001
title: 'Weekly digest'   # a person's
status: approved
sub_objectives:
  - Collect sources
  - Publish
x_owner: ana
---
Notes for people.
"""
PERSON_TITLE = "title: 'Renamed by a person'"
E0 = {"index": 0, "title": "Collect sources", "attempt": 1, "outcome": "ok",
      "decision": "continue", "token": 1}
E1 = {"index": 1, "title": "Publish", "attempt": 1, "outcome": "ok", "decision": "continue",
      "token": 1}
CLAIM = {"host": "h", "pid": 1, "token": 1, "claimed_at": NOW}
WRITES = [  # what the runner writes for a two-step plan, in order
    {"status": "executing", "claim": CLAIM, "execution_started_at": NOW},
    {"in_flight": {"index": 0, "attempt": 1, "token": 1, "started_at": NOW}},
    {"reflection_log": [E0], "in_flight": None, "current_index": 1, "last_error": None},
    {"in_flight": {"index": 1, "attempt": 1, "token": 1, "started_at": NOW}},
    {"reflection_log": [E0, E1], "in_flight": None, "current_index": 2, "last_error": None},
    {"status": "completed", "completed_at": NOW, "in_flight": None, "last_error": None},
]
WINDOWS = ["applied", "checked", "exchanged", "swapped", "done", "between"]


def with_person_title(text: bytes) -> bytes:
    lines = text.decode().splitlines(keepends=True)
    return "".join(PERSON_TITLE + "   # a person's\n" if ln.startswith("title:") else ln
                   for ln in lines).encode()


def save(path: Path, data: bytes, style: str) -> None:
    if style == "rename":  # most editors: a new file renamed over the plan
        tmp = path.with_name(".P-P-001.md.swp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    else:  # VS Code: truncate and write in place, same inode
        with open(path, "r+b") as f:
            f.truncate(0)
            f.write(data)


@dataclass
class Person:
    """Saves once: at write number `write` (1-based), at `window`."""

    path: Path
    window: str
    write: int
    kind: str  # previous (the file before this write), first (before the claim), fresh
    style: str
    versions: list[bytes]  # the file after each write of an undisturbed run
    now_writing: int = 0
    saved: bytes | None = None
    statuses: list[PlanStatus] = field(default_factory=list)
    revs: list[int] = field(default_factory=list)  # the rev each daemon write stamped

    def at(self, point: str, target: Path | None = None) -> None:
        if self.saved is not None or point != self.window or self.now_writing != self.write:
            return
        if target is not None and target != self.path:
            return
        if self.kind == "fresh":
            base = self.path.read_bytes()
        elif self.kind == "first":
            base = self.versions[0]
        else:
            base = self.versions[self.write - 1]
        self.saved = with_person_title(base)
        save(self.path, self.saved, self.style)


def run(vault, path: Path, person: Person | None) -> HeldPlan:
    held = HeldPlan(vault, path)
    for n, changes in enumerate(WRITES, 1):
        if person:
            person.now_writing = n
        held.update(changes)
        if person:
            person.statuses.append(held.plan.status)
            person.revs.append(held.plan.rev)
            person.at("between")
        held.refresh()  # as the runner does between writes and while a step runs
    return held


@pytest.fixture
def path(vault) -> Path:
    p = vault.plans_dir("P") / "P-P-001.md"
    p.parent.mkdir(parents=True)
    p.write_text(PLAN)
    return p


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> list[bytes]:
    """The plan file after each write of a run nobody disturbed."""
    from modulatio_d.ops.init import init

    vault = init(tmp_path_factory.mktemp("reference") / "vault")
    p = vault.plans_dir("P") / "P-P-001.md"
    p.parent.mkdir(parents=True)
    p.write_text(PLAN)
    held = HeldPlan(vault, p)
    out = [p.read_bytes()]
    for changes in WRITES:
        held.update(changes)
        out.append(p.read_bytes())
    return out


def cases():
    """Every window x write x kind, renamed in; written in place only where that differs
    from a rename: after our swap (the write lands in OUR inode), for an old buffer and a
    fresh edit (an older buffer is the same case to the mechanism)."""
    for window in WINDOWS:
        for write in range(1, len(WRITES) + 1):
            for kind in ("previous", "first", "fresh"):
                yield window, write, kind, "rename"
                if window not in ("applied", "checked") and kind != "first":
                    yield window, write, kind, "inplace"


@pytest.mark.parametrize("window, write, kind, style", list(cases()))
def test_a_save_in_any_window_loses_nothing(vault, path, versions, monkeypatch, window, write,
                                            kind, style):
    if window == "exchanged" and atomic._renameat2 is None:
        pytest.skip("this kernel or file system has no renameat2(RENAME_EXCHANGE)")
    person = Person(path, window, write, kind, style, versions)
    monkeypatch.setattr(atomic, "seam", person.at)
    held = run(vault, path, person)
    assert person.saved is not None, "the person never saved: the seam was not reached"

    # The daemon's own view never went back.
    order = [PlanStatus.EXECUTING, PlanStatus.COMPLETED]
    assert person.statuses == sorted(person.statuses, key=order.index), person.statuses
    assert held.plan.status is PlanStatus.COMPLETED
    assert person.revs == sorted(set(person.revs)), person.revs  # no rev stamped twice

    # The next reader (a restarted daemon, the next claimer) repairs what is left.
    monkeypatch.setattr(atomic, "seam", None)
    after = HeldPlan(vault, path).plan
    on_disk = read_plan(vault, path).plan
    for p in (after, on_disk):
        assert p.title == "Renamed by a person", path.read_text()
        assert p.status is PlanStatus.COMPLETED, path.read_text()
        assert (p.current_index, p.in_flight) == (2, None), path.read_text()
        assert [e["index"] for e in p.reflection_log] == [0, 1], path.read_text()
        assert p.claim["token"] == 1 and p.execution_started_at == NOW, path.read_text()
        assert (p.completed_at, p.last_error) == (NOW, None), path.read_text()
    assert "x_owner: ana" in path.read_text() and path.read_text().endswith("Notes for people.\n")
    # The record, the truth for the next repair, says the same of every daemon key.
    record = owned_keys.load(vault.record_path("P", "P-P-001"))
    assert (record.rev, record.status) == (on_disk.rev, "completed")
    assert json_of(record.keys) == json_of(on_disk.own_keys())


def json_of(keys: dict) -> dict:
    return json.loads(json.dumps(keys, default=times.format_time))


def test_the_snapshot_is_what_the_holder_wrote_not_what_landed_after(vault, path, monkeypatch):
    """The mechanism: a save right after the swap never becomes the holder's snapshot."""
    held = HeldPlan(vault, path)
    person_bytes = with_person_title(PLAN.encode())

    def after_swap(point: str, target: Path) -> None:
        if point == "swapped":
            save(path, person_bytes, "rename")

    monkeypatch.setattr(atomic, "seam", after_swap)
    held.update(WRITES[0])
    monkeypatch.setattr(atomic, "seam", None)
    assert held.snapshot.raw != person_bytes
    assert b"status: executing" in held.snapshot.raw
    assert held.snapshot.signature != atomic.signature(path.stat())  # seen as a change
    assert held.refresh() is True
    assert held.plan.title == "Renamed by a person"
    assert held.plan.status is PlanStatus.EXECUTING and held.plan.claim["token"] == 1


def test_an_undisturbed_snapshot_matches_the_file(vault, path):
    """No save meanwhile: the snapshot's signature is the file's, so no re-read follows."""
    held = HeldPlan(vault, path)
    held.update(WRITES[0])
    assert held.snapshot.raw == path.read_bytes()
    assert held.snapshot.signature == atomic.signature(path.stat())
    assert held.refresh() is False

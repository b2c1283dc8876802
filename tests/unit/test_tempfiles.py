"""Temp files left by a killed writer (store/tempfiles.py): removed when old and named
exactly as ours; a person's files, fresh temp files and lookalikes elsewhere stay."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from modulatio_d.store import atomic, tempfiles
from modulatio_d.store.heartbeat import Heartbeat

NOW = 2_000_000_000.0
WALL = datetime.fromtimestamp(NOW, UTC)


def made(path, age_s: float = 3600.0, text: str = "x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


@pytest.fixture
def leftovers(vault):
    plans, state, daemons = (vault.plans_dir("P"), vault.records_dir("P"), vault.daemons_dir)
    return [
        made(plans / ".P-P-001.md.k3j_x9a0.tmp"),
        made(vault.cron_dir("P") / ".P-C-001.md.abcdefgh.tmp"),
        made(vault.tickets_dir("P") / ".P-P-001-T-01.md.00000000.tmp"),
        made(state / ".P-P-001.json.zzzzzzzz.tmp"),
        made(daemons / ".host.example.org.4242.json.tmp"),
    ]


def test_old_temp_files_of_ours_are_removed(vault, leftovers):
    removed = tempfiles.sweep(vault, ["P"], NOW)
    assert sorted(removed) == sorted(leftovers)
    assert not any(p.exists() for p in leftovers)


def test_what_is_not_ours_or_still_young_stays(vault, leftovers, tmp_path):
    plans = vault.plans_dir("P")
    kept = [
        made(plans / ".P-P-001.md.k3j_x9a0.tmp", age_s=10),  # a live writer's, right now
        made(plans / ".P-P-001.md.swp"),                      # a person's editor
        made(plans / ".notes.txt.abcdefgh.tmp"),              # not a .md beside plans
        made(plans / "P-P-001.md.abcdefgh.tmp"),              # not hidden
        made(plans / ".P-P-001.md.ABCDEFGH.tmp"),             # not mkstemp's alphabet
        made(plans / ".P-P-001.md.abcdefg.tmp"),              # 7 characters, not 8
        made(vault.records_dir("P") / ".P-P-001.md.abcdefgh.tmp"),  # not a record's
        made(vault.root / ".P-P-001.md.abcdefgh.tmp"),        # not a folder we write in
        made(vault.plans_dir("Q") / ".Q-P-001.md.abcdefgh.tmp"),  # a project not served
    ]
    (plans / ".P-P-002.md.abcdefgh.tmp").mkdir()             # a folder, not a file
    (plans / ".P-P-003.md.abcdefgh.tmp").symlink_to(tmp_path)
    kept += [plans / ".P-P-002.md.abcdefgh.tmp", plans / ".P-P-003.md.abcdefgh.tmp"]
    tempfiles.sweep(vault, ["P"], NOW)
    assert all(os.path.lexists(p) for p in kept)


def test_the_names_swept_are_the_names_our_writers_make(vault, monkeypatch):
    """The patterns follow atomic.py's and heartbeat.py's real temp names."""
    made_names = []
    real = atomic._open_temp

    def spy(path, *a, **k):
        fd, name = real(path, *a, **k)
        made_names.append(name)
        return fd, name

    monkeypatch.setattr(atomic, "_open_temp", spy)
    monkeypatch.setattr(os, "replace", lambda *a: None)  # leave them where a kill would
    monkeypatch.setattr(os, "unlink", lambda *a: None)
    plan = vault.plan_path("P", "P-P-001")
    plan.parent.mkdir(parents=True)
    vault.records_dir("P").mkdir(parents=True)
    atomic.replace(plan, b"x")
    atomic.replace(vault.record_path("P", "P-P-001"), b"{}")
    Heartbeat(vault.daemons_dir, 30.0, "0", WALL).beat(WALL)
    monkeypatch.undo()
    names = [*made_names, *vault.daemons_dir.glob(".*.tmp")]
    assert len(names) == 3
    for name in names:
        os.utime(name, (NOW - 3600, NOW - 3600))
    assert sorted(tempfiles.sweep(vault, ["P"], NOW)) == sorted(names)

"""Atomic rewrites (store/atomic.py) with nobody else writing: only our key changes, the
mode is kept, an error leaves the file alone, write_new never replaces. Against real
editor processes: tests/e2e/test_atomic.py."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from modulatio_d.core import markdown
from modulatio_d.store import atomic

PLAN = """\
---
id: P-P-001   # the id
title: 'Digest'
status: approved
sub_objectives: [a, b]
---
Body.
"""


def set_status(status: str):
    def apply(raw: bytes) -> bytes:
        return markdown.set_keys(raw.decode(), {"status": status}).encode()
    return apply


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")
                  or p.name.endswith("~") or "editor-tmp" in p.name)


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "plans" / "P-P-001.md"
    path.parent.mkdir()
    path.write_text(PLAN)
    return path


def test_plain_rewrite_changes_only_our_key_and_keeps_the_mode(plan):
    plan.chmod(0o640)
    inode = plan.stat().st_ino
    snap = atomic.rewrite(plan, set_status("executing"))
    assert plan.read_text() == PLAN.replace("status: approved", "status: executing")
    assert snap.raw == plan.read_bytes() and snap.signature == atomic.signature(plan.stat())
    assert stat.S_IMODE(plan.stat().st_mode) == 0o640
    assert plan.stat().st_ino != inode  # a new file renamed in, never written in place
    assert leftovers(plan.parent) == []


def test_an_error_in_apply_leaves_the_file_alone(plan):
    before = plan.stat()

    def apply(raw: bytes) -> bytes:
        raise ValueError("no")

    with pytest.raises(ValueError):
        atomic.rewrite(plan, apply)
    assert plan.read_text() == PLAN and plan.stat().st_ino == before.st_ino
    assert leftovers(plan.parent) == []


def test_write_new_never_replaces(tmp_path):
    path = tmp_path / "X-P-001.md"
    atomic.write_new(path, b"first", mode=0o640)
    with pytest.raises(FileExistsError):
        atomic.write_new(path, b"second")
    assert path.read_bytes() == b"first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


def test_replace_writes_a_file_only_we_own(tmp_path):
    path = tmp_path / "state.json"
    atomic.replace(path, b"1")
    atomic.replace(path, b"2", mode=0o600)
    assert path.read_bytes() == b"2" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert leftovers(tmp_path) == []

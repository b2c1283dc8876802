"""atomic.rewrite against a real second process that saves the file mid-write.

The races are arranged, not hoped for: the `apply` callback (or the exchange
itself) runs an editor process that saves the file the way vim does (rename the
original away, write a new file), the way most editors do (write a new file and
rename it over), or the way VS Code does (truncate and write in place), and
waits for it to exit. The person's text must survive with our change on top.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from modulatio_d.core import markdown
from modulatio_d.core.errors import FileChanged
from modulatio_d.store import atomic, fs

PLAN = """\
---
id: P-P-001   # the id
title: 'Digest'
status: approved
sub_objectives: [a, b]
---
Body.
"""

EDITOR = r"""
import os, sys
path, style, text = sys.argv[1], sys.argv[2], sys.argv[3].encode()
real = os.path.realpath(path)       # editors save through a link to its target
mode = os.stat(real).st_mode & 0o7777
def fresh(name):
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.write(fd, text)
    os.fsync(fd)
    os.close(fd)
if style == "vim":                  # backup by rename, then a new file at the name
    os.rename(real, real + "~")
    fresh(real)
    os.unlink(real + "~")
elif style == "rename":             # a new file renamed over the old one
    fresh(real + ".editor-tmp")
    os.rename(real + ".editor-tmp", real)
elif style == "vscode":             # truncate and write in place: same inode
    with open(real, "r+b") as f:
        f.truncate(0)
        f.write(text)
else:
    raise SystemExit("unknown style " + style)
"""

STYLES = ["vim", "rename", "vscode"]


def editor_save(path: Path, style: str, text: str) -> None:
    """Save `text` to `path` from another process, as an editor would; wait for it."""
    subprocess.run([sys.executable, "-c", EDITOR, str(path), style, text], check=True,
                   timeout=30)


def set_status(status: str):
    def apply(raw: bytes) -> bytes:
        return markdown.set_keys(raw.decode(), {"status": status}).encode()
    return apply


def person_edit(text: str, n: int = 1) -> str:
    return text.replace("title: 'Digest'", f"title: 'Digest, edited {n}'") + f"Person line {n}.\n"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")
                  or p.name.endswith("~") or "editor-tmp" in p.name)


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "plans" / "P-P-001.md"
    path.parent.mkdir()
    path.write_text(PLAN)
    return path


@pytest.mark.parametrize("style", STYLES)
def test_a_save_between_read_and_rename_is_kept(plan, style):
    plan.chmod(0o600)
    base = atomic.read(plan)
    person = person_edit(PLAN)
    seen: list[bytes] = []

    def apply(raw: bytes) -> bytes:
        seen.append(raw)
        if len(seen) == 1:  # the person saves while we compute our change
            editor_save(plan, style, person)
        return set_status("executing")(raw)

    atomic.rewrite(plan, apply, base)

    assert seen == [PLAN.encode(), person.encode()]  # re-applied to the person's text
    assert plan.read_text() == person.replace("status: approved", "status: executing")
    assert stat.S_IMODE(plan.stat().st_mode) == 0o600
    assert leftovers(plan.parent) == []


@pytest.mark.parametrize("style", STYLES)
def test_a_save_landing_inside_the_swap_is_put_back_and_reapplied(plan, style, monkeypatch):
    if not fs.writing.EXCHANGE:
        pytest.skip("this kernel or file system has no renameat2(RENAME_EXCHANGE)")
    real_exchange = atomic._exchange
    person = person_edit(PLAN)
    calls = []

    def exchange(a: Path, b: Path, **kw) -> bool:
        calls.append(b)
        if len(calls) == 1:  # after our check, before our swap
            editor_save(b, style, person)
        return real_exchange(a, b, **kw)

    monkeypatch.setattr(atomic, "_exchange", exchange)
    plan.chmod(0o600)
    atomic.rewrite(plan, set_status("executing"))

    assert len(calls) == 3  # swap, swap back, swap again onto the person's text
    assert plan.read_text() == person.replace("status: approved", "status: executing")
    assert stat.S_IMODE(plan.stat().st_mode) == 0o600
    assert leftovers(plan.parent) == []


def test_a_second_save_inside_the_swap_back_wins(plan, monkeypatch):
    if not fs.writing.EXCHANGE:
        pytest.skip("this kernel or file system has no renameat2(RENAME_EXCHANGE)")
    real_exchange = atomic._exchange
    first, second = person_edit(PLAN, 1), person_edit(PLAN, 2)
    calls = []

    def exchange(a: Path, b: Path, **kw) -> bool:
        calls.append(b)
        if len(calls) in (1, 2):
            editor_save(b, "rename", first if len(calls) == 1 else second)
        return real_exchange(a, b, **kw)

    monkeypatch.setattr(atomic, "_exchange", exchange)
    atomic.rewrite(plan, set_status("executing"))
    assert plan.read_text() == second.replace("status: approved", "status: executing")
    assert leftovers(plan.parent) == []


@pytest.mark.parametrize("style", STYLES)
def test_without_renameat2_the_check_before_rename_still_works(plan, style, monkeypatch):
    monkeypatch.setattr(fs.writing, "EXCHANGE", False)
    person = person_edit(PLAN)
    calls = []

    def apply(raw: bytes) -> bytes:
        calls.append(raw)
        if len(calls) == 1:
            editor_save(plan, style, person)
        return set_status("paused")(raw)

    atomic.rewrite(plan, apply)
    assert plan.read_text() == person.replace("status: approved", "status: paused")
    assert leftovers(plan.parent) == []


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_link_is_never_written_through(tmp_path, where):
    # The plan itself, or its folder, is a link to a file elsewhere: the rewrite is
    # refused and the file at the other end keeps its bytes (docs/security.md).
    from modulatio_d.store.vault import Vault

    vault = Vault(tmp_path / "vault")
    (tmp_path / "vault").mkdir()
    real = tmp_path / "elsewhere" / "P-P-001.md"
    real.parent.mkdir()
    real.write_text(PLAN)
    if where == "file":
        link = tmp_path / "vault" / "plans" / "P-P-001.md"
        link.parent.mkdir()
        link.symlink_to(real)
    else:
        (tmp_path / "vault" / "plans").symlink_to(real.parent)
        link = tmp_path / "vault" / "plans" / "P-P-001.md"
    with pytest.raises(fs.Refused, match="symbolic link"):
        atomic.rewrite(link, set_status("executing"))
    with pytest.raises(fs.Refused, match="symbolic link"):
        atomic.rewrite(link, set_status("executing"), atomic.Snapshot(link, PLAN.encode(),
                                                                       (0, 0, 0, 0)))
    assert real.read_text() == PLAN
    assert leftovers(real.parent) == [] and vault.root.exists()


def test_a_file_that_keeps_changing_gives_up_with_the_person_text_in_place(plan):
    n = 0

    def apply(raw: bytes) -> bytes:
        nonlocal n
        n += 1
        editor_save(plan, "rename", person_edit(PLAN, n))
        return set_status("executing")(raw)

    with pytest.raises(FileChanged, match=r"changed on disk while it was being written"):
        atomic.rewrite(plan, apply)
    assert plan.read_text() == person_edit(PLAN, n)
    assert leftovers(plan.parent) == []

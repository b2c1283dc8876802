"""`validate` keeps what a plan's checks need of its file (ops/plan_facts.py) under the
file's stat signature: an unchanged plan is not read again, and its verdict still follows
everything else it depends on (the config, folders, PATH, the other plans) at once."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modulatio_d.ops import plan_facts, validate
from modulatio_d.store import rowcache

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ENV = {"PATH": "/usr/bin:/bin"}


def plan(vault, text: str, plan_id: str = "P-P-001") -> Path:
    folder = vault.plans_dir("P")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{plan_id}.md"
    path.write_text(f"---\nid: {plan_id}\n{text}---\nBody.\n")
    return path


@pytest.fixture
def reads(monkeypatch):
    seen: list[str] = []
    real = validate.read_plan
    for reader in (validate, plan_facts):  # the row's reader, and validate's for a refusal
        monkeypatch.setattr(reader, "read_plan", lambda v, p: seen.append(p.stem) or real(v, p))
    monkeypatch.setattr(rowcache, "RACY_S", -1.0)  # files made just now may be cached
    return seen


def lines(vault) -> list[str]:
    return [str(p) for p in validate.validate(vault, ENV, NOW)]


def twice(vault, reads) -> list[str]:
    """The problems of a run that reads every plan and of the next, which reads none."""
    first = lines(vault)
    reads.clear()
    assert lines(vault) == first and reads == []
    return first


def test_the_config_changes_the_verdict_of_a_plan_not_read_again(vault, reads):
    plan(vault, "status: draft\nsub_objectives:\n  - {objective: Write, agent: writer}\n")
    assert [p.split(": ", 2)[2] for p in twice(vault, reads)] == [
        "sub-objective 1: agent 'writer' is neither in .modulatio/config.yaml agents, built in "
        "(mock), nor an installed plugin (modulatio_d.agents) (add it to the config's agents)"]
    vault.config_path.write_text("agents:\n  writer: {use: mock}\n")
    assert lines(vault) == [] and reads == []


def test_a_folder_made_or_removed_changes_the_verdict(vault, reads):
    path = plan(vault, "status: approved\ncwd: work\nsub_objectives:\n  - {run: make}\n")
    missing = f"{path}:4: error: cwd: the folder {vault.root / 'P' / 'work'} does not exist " \
              "(create it, or fix cwd (relative to the project folder))"
    assert twice(vault, reads) == [missing]
    (vault.root / "P" / "work").mkdir()
    assert lines(vault) == []
    (vault.root / "P" / "work").rmdir()
    assert lines(vault) == [missing] and reads == []


def test_a_reflector_put_on_path_changes_the_verdict(vault, reads, tmp_path):
    plan(vault, "status: draft\nreflector: my-judge\nsub_objectives:\n  - {run: make}\n")
    assert ["'my-judge' is not on PATH here" in p for p in twice(vault, reads)] == [True]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "my-judge").write_text("#!/bin/sh\n")
    (bin_dir / "my-judge").chmod(0o755)
    found = validate.validate(vault, {"PATH": f"{bin_dir}:/bin"}, NOW)
    assert found == [] and reads == []


def test_a_dependency_created_or_removed_changes_the_verdict(vault, reads):
    plan(vault, "status: draft\nafter: [P-P-002]\nsub_objectives:\n  - {run: make}\n")
    assert ["after: there is no plan P/plans/P-P-002.md" in p for p in twice(vault, reads)] \
        == [True]
    dep = plan(vault, "status: draft\nsub_objectives:\n  - {run: make}\n", "P-P-002")
    assert lines(vault) == [] and reads == ["P-P-002"]
    dep.unlink()
    assert len(lines(vault)) == 1


def test_a_changed_plan_is_read_again(vault, reads):
    path = plan(vault, "status: draft\nsub_objectives:\n  - {run: make}\n")
    assert twice(vault, reads) == []
    path.write_text(path.read_text().replace("{run: make}", "{run: make, cwd: nowhere}"))
    assert ["cwd: the folder" in p for p in lines(vault)] == [True] and reads == ["P-P-001"]


def test_an_ended_plan_is_cached_and_not_checked(vault, reads):
    plan(vault, "status: completed\ncwd: gone\nsub_objectives:\n  - {run: make}\n")
    assert twice(vault, reads) == []


def test_a_broken_plan_keeps_its_message_unread(vault, reads):
    path = plan(vault, "status: draft\nsub_objectives: {not: a list}\n")
    first = twice(vault, reads)
    assert len(first) == 1 and first[0].startswith(f"{path}:")
    path.write_text(path.read_text().replace("{not: a list}", "[Fine]"))
    assert lines(vault) == [] and reads == ["P-P-001"]


def test_a_linked_plan_is_refused_every_time(vault, reads, tmp_path):
    target = tmp_path / "elsewhere.md"
    target.write_text("---\nid: P-P-001\nstatus: draft\nsub_objectives: [x]\n---\n")
    vault.plans_dir("P").mkdir(parents=True, exist_ok=True)
    os.symlink(target, vault.plans_dir("P") / "P-P-001.md")
    first = lines(vault)
    assert len(first) == 1
    assert lines(vault) == first
    kept = rowcache.RowCache(vault.root, plan_facts.USE).old
    assert kept == {}  # a refusal of the file's kind is never kept


def test_a_row_this_code_did_not_write_is_read_again(vault, reads):
    path = plan(vault, "status: draft\nsub_objectives:\n  - {run: make}\n")
    assert twice(vault, reads) == []
    cache = rowcache.RowCache(vault.root, plan_facts.USE)
    sig, _row = cache.old[str(path)]
    cache.new = {str(path): [sig, {"final": True}]}  # a shape of another FACTS
    cache.changed = True
    cache.save()
    assert lines(vault) == [] and reads == ["P-P-001"]

"""Commands' per-user row cache (store/rowcache.py): a file whose stat signature has not
moved gives its row unread; any change, a file gone or a racy file is read again."""

from __future__ import annotations

import json
import marshal
import os
from datetime import UTC, datetime

import pytest

from modulatio_d.ops import plans, render
from modulatio_d.store import rowcache

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def new(vault, title: str):
    return plans.new_plan(vault, "P", title, [("run", "true")], False, NOW)[1]


@pytest.fixture
def reads(monkeypatch):
    seen: list[str] = []
    real = render.read_plan

    def counting(vault, path):
        seen.append(path.stem)
        return real(vault, path)

    monkeypatch.setattr(render, "read_plan", counting)
    monkeypatch.setattr(rowcache, "RACY_S", -1.0)  # files made just now may be cached
    return seen


def test_unchanged_plans_are_listed_from_the_cache(vault, reads):
    a = new(vault, "First")
    new(vault, "Second")
    first = render.list_plans(vault)
    assert sorted(reads) == ["P-P-001", "P-P-002"]
    reads.clear()
    assert render.list_plans(vault) == first and reads == []
    assert render.list_plans(vault, status="draft") == first and reads == []
    # A change moves the signature: that file alone is read again.
    text = a.read_text()
    a.write_text(text.replace("title: First", "title: First, renamed"))
    rows = render.list_plans(vault)
    assert reads == ["P-P-001"] and rows[0]["title"] == "First, renamed"
    # A file gone is gone from the list and from the cache.
    a.unlink()
    assert [r["id"] for r in render.list_plans(vault)] == ["P-P-002"]
    kept = rowcache.RowCache(vault.root, "plan-rows").old
    assert str(a) not in kept and len(kept) == 1
    saved = marshal.loads(rowcache.RowCache(vault.root, "plan-rows").path.read_bytes())
    assert saved["version"] == rowcache.VERSION and len(saved["rows"]) == 1


def test_a_racy_file_is_not_cached(vault, reads, monkeypatch):
    new(vault, "First")
    monkeypatch.setattr(rowcache, "RACY_S", 3600.0)  # changed within the hour: racy
    render.list_plans(vault)
    render.list_plans(vault)
    assert reads == ["P-P-001", "P-P-001"]


def test_a_broken_cache_is_an_empty_one(vault, reads):
    new(vault, "First")
    render.list_plans(vault)
    for f in os.scandir(rowcache._folder()):
        with open(f.path, "w") as out:
            out.write("{not json")
    reads.clear()
    assert [r["id"] for r in render.list_plans(vault)] == ["P-P-001"] and reads == ["P-P-001"]


def test_validate_does_not_read_an_unchanged_ended_plan_again(vault, reads, monkeypatch):
    from modulatio_d.ops import plan_facts, validate

    done = new(vault, "Done")
    done.write_text(done.read_text().replace("status: draft", "status: completed"))
    new(vault, "Draft")
    seen: list[str] = []
    real = validate.read_plan
    for reader in (validate, plan_facts):  # the row's reader, and validate's for a refusal
        monkeypatch.setattr(reader, "read_plan", lambda v, p: seen.append(p.stem) or real(v, p))
    first = [str(p) for p in validate.validate(vault)]
    assert sorted(seen) == ["P-P-001", "P-P-002"]
    seen.clear()
    assert [str(p) for p in validate.validate(vault)] == first
    # Neither is read again: what their checks need of them is cached (ops/plan_facts.py);
    # the draft's checks against the config and folders run again (tests/unit/
    # test_validate_cache.py).
    assert seen == []


def test_a_status_filter_keeps_what_the_status_line_said(vault, reads):
    a = new(vault, "First")
    b = new(vault, "Second")
    b.write_text(b.read_text().replace("status: draft", "status: completed"))
    assert [r["id"] for r in render.list_plans(vault, status="draft")] == ["P-P-001"]
    assert reads == ["P-P-001"]  # the completed one: its status line alone was looked at
    reads.clear()
    assert [r["id"] for r in render.list_plans(vault, status="draft")] == ["P-P-001"]
    assert reads == []  # neither is read again
    assert [r["id"] for r in render.list_plans(vault, status="completed")] == ["P-P-002"]
    assert reads == ["P-P-002"]  # asked for now: parsed, and kept whole
    reads.clear()
    assert [r["status"] for r in render.list_plans(vault)] == ["draft", "completed"]
    assert reads == []
    a.write_text("---\nid: P-P-001\nstatus: draft\nsub_objectives: 3\n---\n")
    assert [r["id"] for r in render.list_plans(vault, status="invalid")] == ["P-P-001"]


def test_plan_list_json_is_json_dumps_with_an_indent():
    import random

    from modulatio_d.ops.render import row_json, rows_json

    chars = 'ab"\\\n\t\u00e9\u2603\U0001F600 ,:{}[]'
    rng = random.Random(12)

    def text() -> str:
        return "".join(rng.choice(chars) for _ in range(rng.randint(0, 6)))

    cases = [[], [{}], [{"a": 1.5}], [{"a": [1]}], [{"n": None, "t": True, "f": False}]]
    cases += [[{text(): rng.choice([None, True, False, rng.randint(-10**20, 10**20), text()])
                for _ in range(rng.randint(0, 4))} for _ in range(rng.randint(0, 3))]
              for _ in range(300)]
    for rows in cases:
        assert rows_json(rows) == json.dumps(rows, indent=2)
        texts = [row_json(row) for row in rows]  # `plan list --json` from its cached texts
        if None not in texts:
            assert ("[\n  " + ",\n  ".join(texts) + "\n]" if texts else "[]") == \
                json.dumps(rows, indent=2)


def test_a_cache_of_another_python_or_format_is_an_empty_one(vault, reads):
    new(vault, "First")
    render.list_plans(vault)
    cache = rowcache.RowCache(vault.root, "plan-rows")
    saved = marshal.loads(cache.path.read_bytes())
    for other in ({**saved, "python": saved["python"] - 1}, {**saved, "version": 1},
                  ["not", "a", "map"], {**saved, "rows": [1, 2]}):
        cache.path.write_bytes(marshal.dumps(other))
        reads.clear()
        assert [r["id"] for r in render.list_plans(vault)] == ["P-P-001"]
        assert reads == ["P-P-001"]


def test_saving_drops_the_json_cache_of_the_release_before(vault, reads):
    new(vault, "First")
    old = rowcache.RowCache(vault.root, "plan-rows").path.with_suffix(".json")
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text('{"version": 1, "rows": {}}')
    render.list_plans(vault)
    assert not old.exists() and old.with_suffix(".marshal").exists()


def test_the_collector_runs_again_after_a_load(vault, reads):
    import gc

    new(vault, "First")
    render.list_plans(vault)
    assert gc.isenabled()
    rowcache.RowCache(vault.root, "plan-rows")
    assert gc.isenabled()


def test_plan_list_json_joins_the_kept_texts(vault, reads, monkeypatch):
    a = new(vault, "First")
    new(vault, "Second")

    def same() -> str:
        text = render.list_json(vault)
        assert text == json.dumps(render.list_plans(vault), indent=2)
        return text

    first = same()
    texts = rowcache.RowCache(vault.root, "plan-json").old
    assert sorted(texts) == sorted(str(p) for p in vault.plans_dir("P").iterdir())
    reads.clear()
    assert same() == first and reads == []
    with monkeypatch.context() as m:  # every file has its text: the rows are not needed
        m.setattr(render, "_listed", lambda *a: pytest.fail("rows loaded"))
        assert render.list_json(vault) == first
        assert render.list_json(vault, status="draft") == first
    a.write_text(a.read_text().replace("title: First", 'title: "First \\u00e9\\n"'))
    assert "First \\u00e9\\n" in same() and reads == ["P-P-001"]
    assert render.list_json(vault, status="completed") == "[]"
    assert json.loads(render.list_json(vault, status="draft")) == render.list_plans(vault)

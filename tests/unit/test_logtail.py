"""store/logtail.py and store/pool.py on small real files: reading from the end, the
bisection on time, following a file and its rotation (without sleeping), pool sizes."""

from __future__ import annotations

import json
import os

import pytest

from modulatio_d.core.errors import BadFile
from modulatio_d.ops.events_view import Filter, _ts, one_line
from modulatio_d.store import logtail, pool
from modulatio_d.store.logtail import Tail


def _log(path, n, partial=b""):
    with open(path, "wb") as f:
        for i in range(n):
            f.write(json.dumps({"ts": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
                                "event": "e", "n": i}).encode() + b"\n")
        f.write(partial)


def test_backwards_gives_complete_lines_newest_first_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(logtail, "BLOCK", 50)  # lines straddle blocks
    path = tmp_path / "events.jsonl"
    _log(path, 40, partial=b'{"ts": "2026-01-01T01:00:00Z", "ev')
    with Tail(path) as t:
        got = [json.loads(line)["n"] for line in t.backwards()]
        assert got == list(range(39, -1, -1))  # the unfinished last line is not read
        assert [json.loads(line)["n"] for line in t.forward(0)] == list(range(40))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 100])
def test_seek_finds_the_first_line_at_or_after_a_time(tmp_path, n, monkeypatch):
    monkeypatch.setattr(logtail, "BLOCK", 64)
    path = tmp_path / "events.jsonl"
    _log(path, n)
    with Tail(path) as t:
        for target in range(-1, n + 2):
            when = _ts(json.dumps({"ts": f"2026-01-01T00:{max(target, 0) // 60:02d}:"
                                         f"{max(target, 0) % 60:02d}Z"}).encode())
            first = [json.loads(x)["n"] for x in t.forward(t.seek(_ts, when))]
            assert first == list(range(max(target, 0), n))


def test_follow_reads_new_lines_then_the_rotated_file_then_the_new_one(tmp_path):
    path = tmp_path / "events.jsonl"
    _log(path, 2)
    t = Tail(path)
    with open(path, "ab") as f:
        f.write(b"three\nfo")
    assert list(t.follow(stop=lambda: True)) == [b"three"]
    with open(path, "ab") as f:
        f.write(b"ur\n")
    os.rename(path, tmp_path / "events.jsonl.1")
    with open(tmp_path / "events.jsonl.1", "ab") as f:
        f.write(b"five, written before the rename reached its writer\n")
    with open(path, "wb") as f:
        f.write(b"six\n")
    assert list(t.follow(stop=lambda: True)) == [
        b"four", b"five, written before the rename reached its writer", b"six"]
    t.close()


def test_filters_and_the_readable_line():
    f = Filter(("step_started",), "P-P-001", "P")
    raw = json.dumps({"ts": "t", "event": "step_started", "host": "h", "pid": 1,
                      "project": "P", "plan": "P-P-001", "index": 0, "attempt": 2,
                      "title": "x"}).encode()
    assert f.match(raw) is not None
    assert Filter(plan="P-P-0011").match(raw) is None
    assert Filter(project="Q").match(raw) is None
    assert Filter(("step",)).match(raw) is None  # a type is a whole name
    assert one_line(json.loads(raw)) == "t step_started P/P-P-001 step 1 attempt 2 h.1 title=x"


@pytest.mark.parametrize("text,line,says", [
    ("workers: -1\n", 1, "from 0 to 64"),
    ("# size\n\nworkers: 65\n", 3, "from 0 to 64"),
    ("workers: 2\nworkers: 3\n", 2, "twice"),
    ("workers: two\n", 1, "whole number"),
    ("size: 2\n", 1, "expected `workers: N`"),
])
def test_bad_pool_sizes_name_their_line(tmp_path, text, line, says):
    with pytest.raises(BadFile) as e:
        pool.parse_size(tmp_path / "h.yaml", text)
    assert e.value.line == line and says in str(e.value)


def test_good_pool_sizes():
    assert pool.parse_size("h.yaml", "# c\nworkers: 0  # idle\n") == 0
    assert pool.check_size("64") == 64
    with pytest.raises(ValueError):
        pool.check_size("1.5")


@pytest.mark.parametrize("host", ["../config", "a/b", "", ".hidden", "x y"])
def test_a_host_that_is_no_host_name_is_refused(tmp_path, host):
    from modulatio_d.core.errors import UsageError
    from modulatio_d.ops.init import init
    from modulatio_d.ops.pool import set_size

    vault = init(tmp_path / "v")
    before = {p: p.read_bytes() for p in vault.meta.rglob("*") if p.is_file()}
    with pytest.raises(UsageError):
        set_size(vault, 2, host)
    assert {p: p.read_bytes() for p in vault.meta.rglob("*") if p.is_file()} == before

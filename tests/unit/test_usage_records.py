"""Usage lines (store/usage.py): what a line may hold, reading them with a warning per bad
line, appending whole lines. What a daemon does with them: tests/e2e/test_usage.py."""

from __future__ import annotations

import json
import logging

import pytest

from modulatio_d.store import usage

# --- check and read_lines --------------------------------------------------------


@pytest.mark.parametrize("record, problem", [
    ({"input_tokens": 1, "output_tokens": 2, "cost_usd": 0.5}, None),
    ({}, None),  # every field is optional; missing counts are 0
    ({"input_tokens": 0, "output_tokens": 0, "cost_usd": 0}, None),
    ({"cost_usd": 3}, None),  # a whole number of dollars is a number
    ([1, 2], "not a JSON object"),
    ("text", "not a JSON object"),
    (None, "not a JSON object"),
    ({"input_tokens": -1}, "input_tokens must be a whole number >= 0"),
    ({"input_tokens": 1.5}, "input_tokens must be a whole number >= 0"),
    ({"input_tokens": "10"}, "input_tokens must be a whole number >= 0"),
    ({"input_tokens": True}, "input_tokens must be a whole number >= 0"),
    ({"output_tokens": None}, "output_tokens must be a whole number >= 0"),
    ({"cost_usd": -0.01}, "cost_usd must be a number >= 0"),
    ({"cost_usd": "0.1"}, "cost_usd must be a number >= 0"),
    ({"cost_usd": False}, "cost_usd must be a number >= 0"),
])
def test_check(record, problem):
    assert usage.check(record) == problem


def test_read_lines_skips_bad_lines_and_warns_with_file_and_line(tmp_path, caplog):
    path = tmp_path / "u.jsonl"
    path.write_bytes(b'{"input_tokens": 5, "output_tokens": 1, "cost_usd": 0.1}\n'
                     b"\n"
                     b"not json\n"
                     b'{"input_tokens": -3}\n'
                     b"[1]\n"
                     b'{"output_tokens": 4, "model": "m"}\n'
                     b'\xff\xfe{"broken utf8"\n'
                     b'{"input_tokens": 2, "output_tokens": 2}')  # no final newline
    with caplog.at_level(logging.WARNING, logger="modulatio.usage"):
        got = usage.read_lines(path, warn=True)
    assert [r.get("input_tokens", 0) + r.get("output_tokens", 0) for r in got] == [6, 4, 4]
    warned = [r.getMessage() for r in caplog.records if r.name == "modulatio.usage"]
    assert [w.split(": usage line skipped: ")[0] for w in warned] == [
        f"{path}:3", f"{path}:4", f"{path}:5", f"{path}:7"]
    assert "not JSON" in warned[0] and "input_tokens" in warned[1]
    caplog.clear()
    assert usage.read_lines(path) == got and not caplog.records  # quiet without warn
    assert usage.read_lines(tmp_path / "missing.jsonl", warn=True) == []
    t = usage.totals(path)
    assert (t.calls, t.input_tokens, t.output_tokens, t.tokens) == (3, 7, 7, 14)
    assert t.cost_usd == pytest.approx(0.1)


def test_append_writes_whole_lines(tmp_path):
    path = tmp_path / "u.jsonl"
    usage.append(path, [])
    assert not path.exists()
    usage.append(path, [{"input_tokens": 1}, {"input_tokens": 2, "b": None}])
    usage.append(path, [{"input_tokens": 3}])
    assert [json.loads(line)["input_tokens"] for line in path.read_text().splitlines()] == [1, 2, 3]
    assert path.read_text().endswith("\n")


# --- with a daemon -----------------------------------------------------------------


def line(tokens_in: int, tokens_out: int, cost: float = 0.0, **extra) -> str:
    return json.dumps({"model": "m", "input_tokens": tokens_in, "output_tokens": tokens_out,
                       "cost_usd": cost, "call_id": f"c{tokens_in}", "agent_id": "test",
                       **extra})


def test_an_append_tried_again_writes_its_lines_once_and_ends_a_half_line(tmp_path):
    append, read_lines = usage.append, usage.read_lines
    path = tmp_path / "P-P-001.usage.jsonl"
    block = [{"call_id": "c1", "input_tokens": 1}, {"call_id": "c2", "input_tokens": 2}]
    append(path, block)
    append(path, block, again=True)  # the first try's fsync failed, its write did not
    assert [u["call_id"] for u in read_lines(path)] == ["c1", "c2"]
    with open(path, "ab") as f:
        f.write(b'{"call_id": "c3", "inp')  # a write cut short by ENOSPC
    append(path, [{"call_id": "c3", "input_tokens": 3}], again=True)
    assert [u["call_id"] for u in read_lines(path)] == ["c1", "c2", "c3"]
    assert path.read_text().splitlines()[2] == '{"call_id": "c3", "inp'  # one bad line, kept

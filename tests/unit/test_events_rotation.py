"""events.jsonl rotation (store/events.py): dated files, read back as one log."""

from __future__ import annotations

from datetime import UTC, datetime

from modulatio_d.store import events


def _clock():
    return datetime(2026, 12, 2, 1, 5, 7, tzinfo=UTC)


def test_rotates_by_size_and_reads_across_files(tmp_path):
    path = tmp_path / "events.jsonl"
    log = events.EventLog(path, _clock, max_bytes=200)
    log("first", n=1)  # the first append looks: small, kept
    assert events.files(path) == [path]
    log._since = events.ROTATE_CHECK
    log("second", pad="x" * 300)  # over the limit: rotated after this line
    rotated = tmp_path / "events-20261202T010507Z.jsonl"
    assert rotated.exists() and not path.exists()
    log("third")
    assert events.files(path) == [rotated, path]
    assert [e["event"] for e in events.read(path)] == ["first", "second", "third"]
    assert [e["event"] for e in events.read(path, ("third", "first"))] == ["first", "third"]


def test_same_second_rotation_leaves_the_live_file(tmp_path):
    path = tmp_path / "events.jsonl"
    (tmp_path / events.rotated_name(_clock())).write_text('{"event": "old"}\n')
    path.write_text('{"event": "live"}\n' * 20)
    assert events.rotate(path, _clock(), 10) is None
    assert path.exists()
    assert [e["event"] for e in events.read(path)] == ["old"] + ["live"] * 20


def test_rotated_names_sort_by_time():
    a = events.rotated_name(datetime(2026, 1, 9, 23, tzinfo=UTC))
    b = events.rotated_name(datetime(2026, 10, 1, 1, tzinfo=UTC))
    assert sorted([b, a]) == [a, b]
    assert events.rotated_at(a) == datetime(2026, 1, 9, 23, tzinfo=UTC)
    assert events.rotated_at("events.jsonl") is None

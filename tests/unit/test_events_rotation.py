"""events.jsonl rotation (store/events.py): dated files, read back as one log."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

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


def test_step_log_names_sort_and_the_cap_keeps_head_and_tail(tmp_path):
    from modulatio_d.store import steplogs

    assert sorted([steplogs.names(9, 1)[0], steplogs.names(1, 1)[0]]) == \
        ["0002-01.log", "0010-01.log"]
    log = tmp_path / "0001-01.log"
    log.write_bytes(b"== modulatio: header\n" + b"x" * 5000 + b"the end\n")
    assert steplogs.trim(log, 100_000) == 0
    cut = steplogs.trim(log, 1000)
    data = log.read_bytes()
    assert cut == 5029 - 1000
    assert data.startswith(b"== modulatio: header\n") and data.endswith(b"the end\n")
    assert f"== modulatio: {cut} bytes cut here".encode() in data
    assert len(data) < 1100


def test_retention_config(tmp_path):
    from modulatio_d.core.errors import BadFile
    from modulatio_d.store import config

    path = tmp_path / "config.yaml"
    path.write_text("retention:\n  max_log_bytes: 2M\n  older_than: 30d\n  keep_last: 5\n")
    r = config.load(path).retention
    assert (r.max_log_bytes, r.older_than, r.keep_last, r.archive) == (2 * 1024 ** 2,
                                                                       30 * 86400, 5, True)
    assert config.load(tmp_path / "none.yaml").retention.older_than is None
    path.write_text("retention:\n  max_log_bytes: lots\n")
    with pytest.raises(BadFile, match="config.yaml:1: retention: 'lots' is not a size"):
        config.load(path)


@pytest.fixture
def counted(tmp_path, monkeypatch):
    """(events.jsonl's path, its EventLog, the lines of each append made, in order)."""
    path = tmp_path / "events.jsonl"
    appends: list[int] = []
    real = events.fs.append
    monkeypatch.setattr(events.fs, "append", lambda p, data, **k: (
        appends.append(data.count(b"\n")), real(p, data, **k)))
    return path, events.EventLog(path, _clock), appends


def test_events_told_together_are_one_append(counted):
    """A claim's `claimed` and `status_changed` (daemon/claim.py): one open, lock and
    write of events.jsonl, the lines in the order told; alone, each is its own."""
    path, log, appends = counted
    with log.together():
        log("claimed", plan="P-P-001")
        with log.together():  # nested: still the outer one's append
            log("status_changed", plan="P-P-001", status="executing")
        assert appends == [] and not path.exists()
    log("step_started", plan="P-P-001")
    assert appends == [2, 1]
    assert [e["event"] for e in events.read(path)] == ["claimed", "status_changed",
                                                       "step_started"]


def test_lines_held_together_are_written_before_a_wait(counted):
    """A run's last step_ended waits for its status change (daemon/runner.py); a plan
    write tried again later must not keep it back meanwhile: write_held() writes what is
    held, the rest still goes in the together()'s one append, in the order told."""
    path, log, appends = counted
    log.write_held()  # nothing held: nothing written
    with log.together():
        log("step_ended", plan="P-P-001")
        log("write_waiting", plan="P-P-001")
        log.write_held()  # the writer is about to wait for the plan's write
        assert appends == [2]
        log("status_changed", plan="P-P-001", status="completed")
    assert appends == [2, 2]  # the status change and its plan_completed
    assert [e["event"] for e in events.read(path)] == [
        "step_ended", "write_waiting", "status_changed", "plan_completed"]

"""Waiting for a lock on a fake clock (store/lock.py flock_until, FileLock.acquire): real
flocks on real files (two open()s in one process contend like two processes), no
real waiting."""

from __future__ import annotations

import errno
import json
import os

import pytest
from fakes import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st

from modulatio_d.core.errors import BadFile
from modulatio_d.store.lock import FileLock, flock_until


@pytest.fixture
def held(tmp_path):
    other = FileLock(tmp_path / "x.lock")
    assert other.try_acquire()
    yield other
    other.release()


def test_a_busy_lock_is_tried_until_the_deadline_then_given_up(tmp_path, held):
    clock = FakeClock()
    lock = FileLock(tmp_path / "x.lock")
    assert lock.acquire(clock.monotonic() + 0.5, clock=clock.monotonic,
                        sleep=clock.sleep) is False
    assert 0.5 < clock.monotonic() - 1000.0 <= 0.51  # a try every 10 ms, one past the end
    assert lock.fd is None


def test_a_lock_released_while_waiting_is_taken(tmp_path, held):
    clock = FakeClock()
    lock = FileLock(tmp_path / "x.lock")
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.sleep(seconds)
        if len(sleeps) == 20:
            held.release()  # the holder finishes
    assert lock.acquire(clock.monotonic() + 5, clock=clock.monotonic, sleep=sleep)
    assert sleeps == [0.01] * 20
    assert not FileLock(tmp_path / "x.lock").try_acquire()
    lock.release()


def test_try_acquire_never_waits(tmp_path, held):
    lock = FileLock(tmp_path / "x.lock")
    assert lock.try_acquire() is False
    held.release()
    assert lock.try_acquire() is True
    lock.release()


def test_a_free_lock_is_taken_at_once_even_past_the_deadline(tmp_path):
    clock = FakeClock()
    fd = os.open(tmp_path / "pid", os.O_RDWR | os.O_CREAT)
    try:
        assert flock_until(fd, clock.monotonic() - 1, clock=clock.monotonic,
                           sleep=clock.sleep)
        assert clock.monotonic() == 1000.0
    finally:
        os.close(fd)


def test_a_lock_file_that_is_a_link_is_a_bad_file(tmp_path):
    (tmp_path / "x.lock").symlink_to(tmp_path / "target")
    with pytest.raises(BadFile, match="cannot open the lock file"):
        FileLock(tmp_path / "x.lock").acquire(0.0)


def test_a_holder_sees_its_lock_file_deleted_or_replaced(tmp_path):
    path = tmp_path / "x.lock"
    lock = FileLock(path)
    assert lock.try_acquire()
    try:
        assert lock.still_ours() is None
        path.unlink()  # a person "cleaning up", a sync tool
        assert lock.still_ours() == "deleted"
        path.write_text("")  # the next claimer's new lock file: a new inode
        assert lock.still_ours() == "replaced"
        other = FileLock(path)
        assert other.try_acquire()  # why it matters: it excludes nobody any more
        other.release()
    finally:
        lock.release()
    assert lock.still_ours() == "released"


def test_a_lock_file_replaced_by_a_rename_is_seen(tmp_path):
    path = tmp_path / "x.lock"
    lock = FileLock(path)
    assert lock.try_acquire()
    try:
        (tmp_path / "synced").write_text("{}")
        os.replace(tmp_path / "synced", path)
        assert lock.still_ours() == "replaced"
    finally:
        lock.release()


def test_a_lookup_saying_missing_while_the_folder_lists_the_lock_file_is_no_loss(
        tmp_path, monkeypatch):
    """A network client (GlusterFS) may say ENOENT for seconds of a file that is there:
    the lock is lost only when the folder no longer lists the file either."""
    path = tmp_path / "P-P-001.lock"
    lock = FileLock(path)
    assert lock.try_acquire()
    with lock:
        real = os.lstat

        def lstat(p, *a, **k):
            if os.fspath(p) == os.fspath(path):
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(p))
            return real(p, *a, **k)
        monkeypatch.setattr(os, "lstat", lstat)
        assert lock.still_ours() is None
        path.unlink()
        assert lock.still_ours() == "deleted"


_NOTE_VALUES = st.one_of(st.integers(-10**12, 10**12), st.booleans(), st.none(),
                         st.text(max_size=40))
_NOTES = st.dictionaries(st.sampled_from(["host", "pid", "token", "rev", "plan", "released",
                                          "claimed_at"]), _NOTE_VALUES, max_size=7)


@given(st.lists(_NOTES, min_size=1, max_size=6))
@settings(max_examples=20, deadline=None)
def test_each_note_reads_back_as_written_whatever_came_before(tmp_path_factory, notes):
    """The note is written over the old one and cut to its length (no truncation to 0
    first: ext4 flushes such a file at close): the file then holds that note alone."""
    lock = FileLock(tmp_path_factory.mktemp("n") / "x.lock")
    assert lock.try_acquire()
    try:
        for note in notes:
            lock.note_holder(**note)
            assert lock.noted(fresh=False) == note
            assert os.path.getsize(lock.path) == len(json.dumps(note, sort_keys=True)) + 1
    finally:
        lock.release()


@given(_NOTES, _NOTES)
@settings(max_examples=100, deadline=None)
def test_a_note_read_half_written_is_no_note_or_the_new_one(old, new):
    """What a reader sees between the write over the old note and the cut: the new
    note followed by the old one's tail. It never parses as another note."""
    before = (json.dumps(old, sort_keys=True) + "\n").encode()
    after = (json.dumps(new, sort_keys=True) + "\n").encode()
    seen = after + before[len(after):]
    try:
        found = json.loads(seen)
    except ValueError:
        return
    assert found == new


def test_a_note_never_empties_the_lock_file_first(tmp_path, monkeypatch):
    """ext4 (auto_da_alloc) flushes at close a file that was truncated to 0 and written:
    a write to the disk at every release. The note is cut to its own length instead."""
    lock = FileLock(tmp_path / "x.lock")
    assert lock.try_acquire()
    cuts = []
    real = os.ftruncate
    monkeypatch.setattr(os, "ftruncate", lambda fd, n: cuts.append(n) or real(fd, n))
    lock.note_holder(host="h", pid=1, plan="P-P-001", token=12, rev=40)
    lock.note_holder(host="h", pid=1, token=12, released=True)
    lock.release()
    assert 0 not in cuts and len(cuts) == 2

"""ESTALE and EIO on reads (store/fs/ read, under store/atomic.py): a read racing another host's rename is
tried again briefly, and past that fails as an OSError, never as a bad file."""

from __future__ import annotations

import errno

import pytest
from fakes import Events, FakeClock, write_plan

from modulatio_d.daemon.scan import Scanner
from modulatio_d.store import atomic, fs
from modulatio_d.store.plan_file import read_plan


def flaky_open(monkeypatch, path, errors: list[int]) -> list[int]:
    """Fail the next opens of `path` with `errors`, where store/fs/ opens vault files
    (from the root, or by name in the folder's descriptor)."""
    real, seen = fs.reading.open_beneath, []

    def fake(file, *a, **k):
        if str(file) == str(path) and errors:
            seen.append(errors[0])
            code = errors.pop(0)
            raise OSError(code, "injected", str(file))
        return real(file, *a, **k)
    monkeypatch.setattr(fs.reading, "open_beneath", fake)
    real_in = fs.reading.open_in  # the scan opens by name in its folder's descriptor

    def fake_in(folder_fd, file, *a, **k):
        if str(file) == str(path) and errors:
            return fake(file, *a, **k)
        return real_in(folder_fd, file, *a, **k)
    monkeypatch.setattr(fs.reading, "open_in", fake_in)
    monkeypatch.setattr(fs.reading.time, "sleep", lambda s: None)
    return seen


@pytest.mark.parametrize("code", [errno.ESTALE, errno.EIO])
def test_a_transient_error_is_read_through(vault, monkeypatch, code):
    path = write_plan(vault, ["one"])
    seen = flaky_open(monkeypatch, path, [code, code])
    assert read_plan(vault, path).plan.id == "P-P-001"
    assert seen == [code, code]


def test_a_lasting_one_fails_as_an_os_error_after_the_retries(vault, monkeypatch):
    path = write_plan(vault, ["one"])
    seen = flaky_open(monkeypatch, path, [errno.ESTALE] * 10)
    with pytest.raises(OSError) as e:
        atomic.read(path)
    assert e.value.errno == errno.ESTALE and len(seen) == atomic.READ_RETRIES + 1


def test_other_errors_are_not_retried(vault, monkeypatch):
    path = write_plan(vault, ["one"])
    seen = flaky_open(monkeypatch, path, [errno.EACCES, errno.EACCES])
    with pytest.raises(PermissionError):
        atomic.read(path)
    assert seen == [errno.EACCES]


def test_the_scan_passes_over_an_unreadable_plan_without_refusing_it(vault, monkeypatch):
    path = write_plan(vault, ["one"])
    events = Events()
    clock = FakeClock()
    scanner = Scanner(vault, None, events, clock.monotonic)
    flaky_open(monkeypatch, path, [errno.EIO] * (atomic.READ_RETRIES + 1))
    assert scanner.scan(clock.wall()) == []
    assert not [k for k, _ in events if k == "file_refused"]
    assert [c.path for c in scanner.scan(clock.wall())] == [path]  # readable again

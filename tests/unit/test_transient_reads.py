"""ESTALE and EIO on reads (store/fs/ read, under store/atomic.py): a read racing another host's rename is
tried again briefly, and past that fails as an OSError, never as a bad file. A close
that fails is let pass."""

from __future__ import annotations

import errno
import os
from pathlib import Path

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


# close(2) and fstat(2) on a network filesystem: GlusterFS's FUSE client answers a close
# with ENOENT or ESTALE (its flush) and an fstat with ESTALE when another host replaced
# the file meanwhile (tests/multihost/test_replace_multihost.py). A close always frees
# the descriptor; what it says is let pass (store/fs/closing.py).

CLOSE_ERRORS = [errno.ENOENT, errno.ESTALE, errno.EIO, errno.EINTR, errno.ENOSPC]


def failing_closes(monkeypatch, code: int) -> list[int]:
    """Every close in store/fs/ closes, then fails with `code`; the descriptors closed."""
    real, closed = fs.closing.os.close, []

    def close(fd: int) -> None:
        real(fd)
        closed.append(fd)
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(fs.closing.os, "close", close)
    return closed


@pytest.mark.parametrize("code", CLOSE_ERRORS)
def test_a_failed_close_frees_the_descriptor_and_is_let_pass(tmp_path, monkeypatch, code):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    closed = failing_closes(monkeypatch, code)
    fs.close(fd)
    assert closed == [fd]
    with pytest.raises(OSError) as e:
        os.fstat(fd)
    assert e.value.errno == errno.EBADF


def test_closing_a_descriptor_not_ours_is_a_bug_and_raised(tmp_path):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    fs.close(fd)
    with pytest.raises(OSError) as e:
        fs.close(fd)
    assert e.value.errno == errno.EBADF


@pytest.mark.parametrize("code", CLOSE_ERRORS)
def test_every_read_and_write_of_a_vault_goes_on_past_failed_closes(vault, monkeypatch,
                                                                    code):
    """The scan (a first scan and a look at a changed file), the plan's read and
    rewrite, an append: what each does is done, whatever the closes answer."""
    path = write_plan(vault, ["one"])
    other = write_plan(vault, ["one"], plan_id="P-P-002")
    clock = FakeClock()
    scanner = Scanner(vault, None, Events(), clock.monotonic)
    closed = failing_closes(monkeypatch, code)
    assert [c.path for c in scanner.scan(clock.wall())] == [path, other]
    atomic.rewrite(path, lambda text: text.replace(b"title: A plan", b"title: Changed"))
    clock.advance(60)  # the rewrite may give `path` a later mtime, ordering it after `other`
    assert sorted(c.path for c in scanner.scan(clock.wall())) == [path, other]
    assert read_plan(vault, path).plan.title == "Changed"
    fs.append(vault.root / "P" / "log.jsonl", b"{}\n")
    assert (vault.root / "P" / "log.jsonl").read_bytes() == b"{}\n"
    assert closed  # the closes were made, and failed


def test_an_fstat_failing_estale_after_the_open_is_tried_again(vault, monkeypatch):
    """The file replaced between the open and the fstat (GlusterFS: ESTALE)."""
    path = write_plan(vault, ["one"])
    real, failed = os.fstat, []

    def fstat(fd: int) -> os.stat_result:
        if not failed and os.readlink(f"/proc/self/fd/{fd}") == str(path):
            failed.append(fd)
            raise OSError(errno.ESTALE, "Stale file handle")
        return real(fd)
    monkeypatch.setattr(fs.reading.os, "fstat", fstat)
    monkeypatch.setattr(fs.reading.time, "sleep", lambda s: None)
    clock = FakeClock()
    assert [c.path for c in Scanner(vault, None, Events(), clock.monotonic)
            .scan(clock.wall())] == [path]
    assert failed


def test_vault_files_are_closed_only_through_fs_close():
    """Every os.close( in the package is of a pipe, a pidfd or the inotify descriptor, or
    is fs.close's own."""
    allowed = {"daemon/wake.py", "daemon/inotify.py", "daemon/child.py", "daemon/deadman.py",
               "ops/stopping.py", "store/fs/closing.py"}
    package = Path(fs.__file__).parents[2]
    found = {str(p.relative_to(package)): p.read_text().count("os.close(")
             for p in package.rglob("*.py")}
    assert {p for p, n in found.items() if n} == allowed

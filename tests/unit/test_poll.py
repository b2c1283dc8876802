"""Polling for other hosts' changes (daemon/poll.py): one pass at a time, on real folders;
and when a daemon polls at all (the vault's mount, read from a mountinfo text)."""

from __future__ import annotations

import errno
import logging
import os

import pytest
from fakes import FakeClock

from modulatio_d.core.errors import BadFile, FileUnusable
from modulatio_d.daemon.poll import FAILED_PASSES, Outage, Poller, cut_off, needs_polling
from modulatio_d.daemon.wake import Waker
from modulatio_d.store import config


class Pokes(Waker):
    def __init__(self) -> None:
        super().__init__()
        self.poked: list[str] = []

    def poke(self, path: str | None = None) -> None:
        self.poked.append(path)


def project(tmp_path):
    top = tmp_path / "P"
    for sub in ("plans", "cron", "tickets"):
        (top / sub).mkdir(parents=True)
    return top


def replace(path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_a_plan_saved_by_rename_is_reported_and_nothing_else(tmp_path):
    top = project(tmp_path)
    (top / "plans" / "P-P-001.md").write_text("one")
    (top / "plans" / "P-P-002.md").write_text("two")
    waker = Pokes()
    poller = Poller(waker, lambda: 1.0)
    poller.watch(tmp_path, [top])  # the first pass, at once: it only records
    assert poller.poll() == []  # nothing moved: nothing listed, nothing told
    replace(top / "plans" / "P-P-002.md", "two, approved")
    (top / "plans" / "P-P-002.lock").write_text("{}")
    (top / "plans" / "P-P-002.runs").mkdir()
    assert poller.poll() == [str(top / "plans" / "P-P-002.md")]
    assert waker.poked == [str(top / "plans" / "P-P-002.md")]
    assert poller.poll() == []


def test_a_new_project_a_new_plan_and_a_removed_ticket_are_reported(tmp_path):
    top = project(tmp_path)
    (top / "tickets" / "P-P-001-T-01.md").write_text("t")
    poller = Poller(Pokes(), lambda: 1.0)
    poller.watch(tmp_path, [top])
    poller.poll()
    replace(top / "plans" / "P-P-003.md", "new")
    (top / "tickets" / "P-P-001-T-01.md").unlink()
    (tmp_path / "Q").mkdir()
    assert sorted(poller.poll()) == sorted([str(top / "plans" / "P-P-003.md"),
                                            str(top / "tickets"), str(tmp_path)])
    assert poller.poll() == []


def test_a_folder_that_cannot_be_read_is_skipped_until_it_can(tmp_path):
    top = tmp_path / "P"
    poller = Poller(Pokes(), lambda: 1.0)
    poller.watch(tmp_path / "gone", [top])  # the root missing too: no error
    project(tmp_path)
    assert poller.poll() == []  # recorded
    replace(top / "plans" / "P-P-001.md", "x")
    assert poller.poll() == [str(top / "plans" / "P-P-001.md")]


def test_the_thread_polls_at_its_interval_and_stops(tmp_path):
    top = project(tmp_path)
    waker = Waker()
    poller = Poller(waker, lambda: 0.01)
    poller.watch(tmp_path, [top])
    try:
        waker.wait(0.05)
        waker.take_changed()
        replace(top / "plans" / "P-P-001.md", "x")
        assert waker.wait(5.0)
        assert str(top / "plans" / "P-P-001.md") in waker.take_changed()
    finally:
        poller.stop()
        waker.close()
    assert not poller._thread.is_alive()


MOUNTS = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:50 / /srv/gluster rw,relatime shared:9 - fuse.glusterfs srv:/vol rw,user_id=0
41 22 0:51 / /tmp rw shared:10 - tmpfs tmpfs rw
"""


def test_a_vault_on_a_network_filesystem_is_polled_one_on_a_local_disk_is_not(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTS)
    assert "GlusterFS" in needs_polling("/srv/gluster/vault", info)
    assert needs_polling("/home/me/vault", info) is None
    assert needs_polling("/tmp/vault", info) is None
    assert needs_polling("/x", tmp_path / "none") is None


def test_poll_interval_is_read_from_the_config(tmp_path):
    path = tmp_path / "config.yaml"
    assert config.load(path).poll_interval == 1.0
    path.write_text("poll_interval: soon\n")
    with pytest.raises(BadFile, match="poll_interval"):
        config.load(path)
    path.write_text("poll_interval: 0.5\n")
    assert config.load(path).poll_interval == 0.5


def test_a_cut_off_mount_is_told_by_its_errno_even_behind_a_wrapper():
    gone = OSError(errno.ENOTCONN, "Transport endpoint is not connected")
    assert cut_off(gone)
    try:
        try:
            raise gone
        except OSError:
            raise FileUnusable("config.yaml", "cannot read") from None
    except FileUnusable as wrapped:
        assert cut_off(wrapped)
    assert not cut_off(OSError(errno.ENOSPC, "full"))
    assert cut_off(OSError(errno.ESTALE, "Stale file handle"))  # another host's rename
    assert not cut_off(ValueError("x"))
    assert not cut_off(None)


def test_an_outage_is_told_once_and_its_end_once(caplog):
    caplog.set_level(logging.WARNING, logger="modulatio.poll")
    clock = FakeClock()
    outage = Outage(clock.monotonic)
    gone = OSError(errno.ENOTCONN, "Transport endpoint is not connected")
    assert not outage.met(OSError(errno.ENOSPC, "full"))
    assert outage.met(gone) and outage.met(gone)
    clock.advance(42)
    outage.over()
    outage.over()
    told = [r.getMessage() for r in caplog.records if r.name == "modulatio.poll"]
    assert len(told) == 2 and "after 42 s" in told[1]


class _Waits(list):
    """A Waker stand-in that keeps how long each wait was."""

    def wait(self, seconds: float) -> bool:
        self.append(seconds)
        return False


def test_a_system_error_failing_a_pass_is_waited_out_unless_it_stays(caplog):
    """poll.Outage: a pass that raises an OSError waits a tick; the same error failing
    FAILED_PASSES passes in a row is raised (the daemon ends, exit 3); a pass between
    that did not fail, or another error, starts the count again; an error that is no
    OSError (a bug) is raised at once; a cut-off mount's is waited out however long."""
    caplog.set_level(logging.WARNING, logger="modulatio.poll")
    outage, waits = Outage(FakeClock().monotonic), _Waits()
    race = FileNotFoundError(errno.ENOENT, "No such file or directory")

    def fail(error: BaseException) -> None:
        outage.start_pass()
        outage.wait(error, waits, 30)

    for _ in range(5):  # once a pass, with a pass that went well between each
        fail(race)
        outage.start_pass()  # a pass that went well
    assert waits == [30] * 5
    for _ in range(FAILED_PASSES - 1):
        fail(race)
    with pytest.raises(FileNotFoundError):
        fail(race)  # the same error, FAILED_PASSES passes in a row
    outage.start_pass()
    for error in [race, OSError(errno.ENOSPC, "full"), race, OSError(errno.EIO, "I/O")]:
        fail(error)  # never the same twice in a row
    with pytest.raises(ValueError):
        fail(ValueError("a bug"))
    gone = OSError(errno.ENOTCONN, "Transport endpoint is not connected")
    for _ in range(FAILED_PASSES * 3):
        fail(gone)
    told = [r for r in caplog.records if r.name == "modulatio.poll"]
    # traced back: the first of each run of one error (5 alone, the run of three, and the
    # four errors in turn); the second of the run of three is a line only
    assert sum(r.exc_info is not None for r in told) == 10
    assert sum(f"2 of {FAILED_PASSES}" in r.getMessage() for r in told) == 1

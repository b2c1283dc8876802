"""store/mounts.py and the appends it decides: a network filesystem's line is flushed to
the server (fdatasync) before the append's flock is let go; a local disk's is not."""

from __future__ import annotations

import errno
import json
import os

from modulatio_d.store import fs, mounts
from modulatio_d.store.events import EventLog
from modulatio_d.store.fs import appending

INFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "90 22 0:50 / /srv/gluster rw,relatime shared:40 - fuse.glusterfs files:/vol "
    "rw,user_id=0,group_id=0\n"
)


def test_a_gluster_mount_is_shared_and_a_local_disk_is_not(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(INFO)
    assert "GlusterFS" in mounts.shared_kind("/srv/gluster/vault/.modulatio", info)
    assert mounts.shared_kind("/home/me/vault", info) is None
    assert mounts.shared_kind("/x", tmp_path / "none") is None  # unreadable: as local


def syncs(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = os.fdatasync

    def fdatasync(fd):
        calls.append(fd)
        real(fd)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return calls


def test_an_append_on_a_network_filesystem_reaches_the_server_before_its_unlock(
        vault, monkeypatch):
    calls = syncs(monkeypatch)
    log = EventLog(vault.events_path, flush=True)
    log("one")
    log("two")
    assert len(calls) == 2
    assert [e["event"] for e in map(json.loads,
                                     vault.events_path.read_text().splitlines())][-2:] == [
        "one", "two"]


def test_a_local_disks_append_costs_no_sync(vault, monkeypatch):
    calls = syncs(monkeypatch)
    log = EventLog(vault.events_path)  # found out at the first append: tmp is local here
    log("one")
    assert log.flush is False and calls == []


def test_an_append_whose_open_meets_a_stale_handle_is_tried_again(tmp_path, monkeypatch):
    fs.register(tmp_path)
    stale = [OSError(errno.ESTALE, "Stale file handle")] * 2
    real = appending.open_regular

    def open_regular(*a, **k):
        if stale:
            raise stale.pop()
        return real(*a, **k)
    monkeypatch.setattr(appending, "open_regular", open_regular)
    monkeypatch.setattr("modulatio_d.store.fs.reading.READ_RETRY_S", 0.0)
    fs.append(tmp_path / "x.jsonl", b"line\n")
    assert (tmp_path / "x.jsonl").read_bytes() == b"line\n" and stale == []


def test_a_direct_read_gives_the_same_bytes_and_limits(tmp_path, monkeypatch):
    """fs.read(direct=True): an O_DIRECT descriptor, aligned chunks (a file over one
    chunk, not a multiple of a page), the same limit as any read."""
    fs.register(tmp_path)
    data = os.urandom(1024 * 1024 + 4097)
    (tmp_path / "P-P-001.md").write_bytes(data)
    assert fs.read(tmp_path / "P-P-001.md", "plan", direct=True).raw == data
    monkeypatch.setitem(fs.LIMITS, "plan", 1024 * 1024)
    try:
        fs.read(tmp_path / "P-P-001.md", "plan", direct=True)
    except fs.Refused as e:
        assert "plan" in str(e) or "big" in str(e)
    else:
        raise AssertionError("a file over its limit was read")

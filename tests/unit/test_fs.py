"""store/fs/ on real files: no link followed, regular files only, limits, modes.

Every test that opens a path runs twice: with openat2 (RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS) and with the O_NOFOLLOW walk used where the kernel has no
openat2 (`walk` fixture).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulatio_d.core.errors import BadFile
from modulatio_d.store import atomic, fs, owned_keys, usage
from modulatio_d.store.events import EventLog
from modulatio_d.store.events import read as read_events
from modulatio_d.store.lock import FileLock
from modulatio_d.store.vault import Vault


@pytest.fixture(params=["openat2", "walk"])
def walk(request, monkeypatch):
    if request.param == "walk":
        monkeypatch.setattr(fs.opening, "USE_OPENAT2", False)
    elif not fs.opening.USE_OPENAT2:
        pytest.skip("this kernel has no openat2")
    return request.param


@pytest.fixture
def vault(tmp_path: Path, walk) -> Vault:
    (tmp_path / "vault" / "P" / "plans").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("TOP-SECRET\n")
    return Vault(tmp_path / "vault")


def tree_digest(folder: Path) -> dict[str, str]:
    """Every name under `folder` with what it is: a file's sha256, a link's target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if p.is_symlink():
                out[str(p)] = "-> " + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p)] = "dir"
    return out


# --- what is never followed ------------------------------------------------------------

def test_openat2_is_used_when_the_kernel_has_it():
    # The kernel of CI (Linux >= 5.6) has openat2; the walk is the fallback only.
    major, minor = (int(n) for n in os.uname().release.split(".")[:2])
    assert fs.opening.USE_OPENAT2 or (major, minor) < (5, 6)


def test_enosys_from_openat2_switches_to_the_walk_for_good(vault, monkeypatch):
    monkeypatch.setattr(fs.opening, "USE_OPENAT2", True)
    calls = []

    def no_openat2(*args):
        calls.append(args)
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fs.opening, "_openat2", no_openat2)
    path = vault.root / "P" / "plans" / "x.md"
    path.write_text("hello")
    assert fs.read(path, "plan").raw == b"hello"
    assert fs.opening.USE_OPENAT2 is False and len(calls) == 1
    os.symlink(path, vault.root / "P" / "plans" / "l.md")
    with pytest.raises(fs.Refused, match="is a symbolic link"):
        fs.read(vault.root / "P" / "plans" / "l.md", "plan")
    assert len(calls) == 1  # not asked again


@pytest.mark.parametrize("err", [errno.EXDEV, errno.EAGAIN])
def test_a_scoped_walk_that_met_a_change_is_tried_again(vault, monkeypatch, err):
    """openat2 answered EXDEV on GlusterFS (a client dropped a folder's entry during the
    walk: two events lines of a soak lost) and may answer EAGAIN after a rename: a path
    without `..` cannot climb out, so both are tried again, a few times, then told."""
    if not fs.opening.USE_OPENAT2:
        pytest.skip("the walk (no openat2): nothing scoped to retry")
    path = vault.root / "P" / "plans" / "x.md"
    path.write_text("hello")
    real, failures = fs.opening._syscall, []

    def racing(nr, *args):
        if nr == fs.opening._SYSOPENAT2_C and len(failures) < budget:
            failures.append(nr)
            ctypes.set_errno(err)
            return -1
        return real(nr, *args)

    monkeypatch.setattr(fs.opening, "_syscall", racing)
    budget = fs.opening.SCOPED_RETRIES
    assert fs.read(path, "plan").raw == b"hello" and len(failures) == budget
    failures.clear()
    budget = fs.opening.SCOPED_RETRIES + 1  # past the retries: the error, as before
    with pytest.raises(OSError) as e:
        fs.read(path, "plan")
    assert e.value.errno == err


@pytest.mark.parametrize("target", ["inside", "outside"])
def test_a_linked_file_is_never_read_or_written(vault, tmp_path, target):
    real = (vault.root / "real.md") if target == "inside" else tmp_path / "outside" / "secret"
    if target == "inside":
        real.write_text("TOP-SECRET\n")
    link = vault.root / "P" / "plans" / "x.md"
    link.symlink_to(real)
    before = tree_digest(tmp_path)
    for action in (lambda: fs.read(link, "plan"), lambda: list(fs.lines(link, "usage line")),
                   lambda: fs.tail(link, 100), lambda: fs.append(link, b"X\n"),
                   lambda: fs.open_regular(link, os.O_RDWR | os.O_CREAT),
                   lambda: atomic.rewrite(link, lambda raw: raw + b"X")):
        with pytest.raises(fs.Refused, match=r"is a symbolic link \(to '.*'\): links are never "
                                             r"followed in the vault") as e:
            action()
        assert "TOP-SECRET" not in str(e.value)
        assert isinstance(e.value, OSError)  # writers that survive I/O errors survive it
    with pytest.raises(BadFile, match=r"cannot open the lock file: is a symbolic link"):
        FileLock(link).acquire(0)
    assert tree_digest(tmp_path) == before


def test_a_linked_folder_on_the_way_is_never_entered(vault, tmp_path):
    (vault.root / "P" / "tickets").symlink_to(tmp_path / "outside")
    inner = vault.root / "P" / "tickets" / "secret"
    before = tree_digest(tmp_path)
    for action in (lambda: fs.read(inner, "ticket"), lambda: fs.append(inner, b"X"),
                   lambda: fs.stat_of(inner), lambda: fs.temp(inner, b"X"),
                   lambda: fs.mkdirs(inner.parent / "new"), lambda: fs.unlink(inner),
                   lambda: atomic.write_new(inner.parent / "n.md", b"X"),
                   lambda: atomic.replace(inner.parent / "n.json", b"X"),
                   lambda: fs.check_folder(inner.parent)):
        with pytest.raises(fs.Refused, match="symbolic link"):
            action()
    assert list(vault.files("P", "tickets")) == []
    assert fs.names(vault.root / "P" / "plans") == []
    assert tree_digest(tmp_path) == before


def test_mkdirs_refuses_a_link_where_a_folder_is_made(vault, tmp_path):
    (vault.root / ".modulatio").mkdir()
    (vault.root / ".modulatio" / "state").symlink_to(tmp_path / "outside")
    with pytest.raises(fs.Refused, match=r"lies in \S*/\.modulatio/state, a symbolic link"):
        fs.mkdirs(vault.records_dir("P"))
    assert owned_keys.load(vault.record_path("P", "P-P-001")) is None
    assert sorted(os.listdir(tmp_path / "outside")) == ["secret"]


def test_unlink_removes_a_link_itself_never_its_target(vault, tmp_path):
    link = vault.root / "P" / "plans" / "x.usage.jsonl"
    link.symlink_to(tmp_path / "outside" / "secret")
    fs.unlink(link)
    assert not link.is_symlink() and (tmp_path / "outside" / "secret").exists()


def test_rename_over_a_link_replaces_the_link(vault, tmp_path):
    link = vault.root / "P" / "plans" / "x.json"
    link.symlink_to(tmp_path / "outside" / "secret")
    atomic.replace(link, b"ours")
    assert not link.is_symlink() and link.read_bytes() == b"ours"
    assert (tmp_path / "outside" / "secret").read_text() == "TOP-SECRET\n"


def test_a_vault_folder_made_anew_is_opened_anew(tmp_path, walk):
    import shutil

    root = tmp_path / "v"
    root.mkdir()
    (root / "a.md").write_text("old")
    first = Vault(root)
    assert fs.read(root / "a.md", "plan").raw == b"old"
    shutil.rmtree(root)
    root.mkdir()
    (root / "a.md").write_text("new")
    second = Vault(root)
    assert fs.read(root / "a.md", "plan").raw == b"new"
    assert first.fs_root is not second.fs_root


def test_a_path_placed_once_moves_to_a_root_registered_under_its_root(tmp_path):
    """locate() remembers where a path lies (opening._placed), lexically: a root
    registered beneath another takes the paths beneath it from then on, and a root
    let go takes its paths with it (then a path is its own parent's, not a vault's)."""
    outer = tmp_path / "outer"
    (outer / "inner" / "plans").mkdir(parents=True)
    path = outer / "inner" / "plans" / "a.md"
    kept = fs.register(outer)
    root, rel, vault = fs.opening.locate(path)
    assert (root, rel, vault) == (kept, "inner/plans/a.md", True)
    assert fs.opening.locate(path) == (kept, "inner/plans/a.md", True)  # remembered
    inner = fs.register(outer / "inner")
    assert fs.opening.locate(path) == (inner, "plans/a.md", True)
    assert fs.opening.locate(str(path)) == (inner, "plans/a.md", True)
    del inner
    import gc

    gc.collect()
    assert fs.opening.locate(path)[:2] == (kept, "inner/plans/a.md")
    del kept, root
    gc.collect()
    assert fs.opening.locate(path)[1:] == ("a.md", False)


# --- only regular files, one link, within limits ------------------------------------------

@pytest.mark.timeout(10)
def test_a_fifo_is_refused_at_once_never_waited_on(vault):
    fifo = vault.root / "P" / "plans" / "X.md"
    os.mkfifo(fifo)
    for action in (lambda: fs.read(fifo, "plan"), lambda: list(fs.lines(fifo, "event line")),
                   lambda: fs.append(fifo, b"x"), lambda: fs.tail(fifo, 10),
                   lambda: vault.read(fifo)):
        with pytest.raises(fs.Refused, match=r"is a FIFO \(named pipe\), not a regular file"):
            action()


def test_a_folder_socket_or_device_is_refused_with_what_it_is(vault):
    plans = vault.root / "P" / "plans"
    (plans / "D.md").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(plans / "S.md"))
        for name, what in (("D.md", "a folder"), ("S.md", "a socket")):
            with pytest.raises(fs.Refused, match=f"is {what}, not a regular file"):
                fs.read(plans / name, "plan")
            with pytest.raises(fs.Refused, match=f"is {what}, not a regular file"):
                fs.append(plans / name, b"x")
    finally:
        sock.close()
    if os.geteuid() == 0:
        os.mknod(plans / "C.md", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
        with pytest.raises(fs.Refused, match="is a character device, not a regular file"):
            fs.read(plans / "C.md", "plan")


def test_a_hard_linked_file_is_neither_read_nor_written(vault, tmp_path):
    outside = tmp_path / "outside" / "secret"
    inside = vault.root / "P" / "plans" / "P-P-001.usage.jsonl"
    os.link(outside, inside)
    for action in (lambda: fs.read(inside, "plan"), lambda: fs.append(inside, b"{}\n"),
                   lambda: list(fs.lines(inside, "usage line")),
                   lambda: fs.open_regular(inside, os.O_RDWR)):
        with pytest.raises(fs.Refused, match="has 2 hard links: it may be a file outside the "
                                             "vault linked in"):
            action()
    assert outside.read_text() == "TOP-SECRET\n"
    assert usage.totals(inside).calls == 0  # told in the log, counted as nothing


def test_size_is_checked_before_reading(vault, monkeypatch):
    plan = vault.root / "P" / "plans" / "big.md"
    with open(plan, "wb") as f:
        f.truncate(8 << 30)  # sparse: nothing is written
    reads = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    with pytest.raises(fs.Refused, match=r"file is 8589934592 bytes, more than the 67108864 "
                                         r"allowed \(move long text out of the plan\)"):
        fs.read(plan, "plan")
    assert reads == []


def test_a_file_that_grows_while_read_is_refused(vault, monkeypatch):
    plan = vault.root / "P" / "plans" / "grows.md"
    with open(plan, "wb") as f:
        f.truncate(fs.LIMITS["plan"] + 10)  # sparse: 64 MiB of zeros, none written to disk
    real_fstat = os.fstat

    def fstat_before_growth(fd):  # the size it had when opened, before a writer went on
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid,
                               st.st_gid, 100, st.st_atime, st.st_mtime, st.st_ctime))

    monkeypatch.setattr(os, "fstat", fstat_before_growth)
    with pytest.raises(fs.Refused, match="file grew past the 67108864 bytes allowed while it "
                                         "was read"):
        fs.read(plan, "plan")


def test_a_whole_file_read_asks_its_size_once_and_a_short_read_goes_on(vault, monkeypatch):
    """One read() of size + 1 bytes when the file holds what fstat said (no read of the
    end); a read that returns less than the size goes on to the end."""
    plan = vault.root / "P" / "plans" / "P-P-001.md"
    plan.write_bytes(b"x" * 600)
    asked, real_read = [], os.read
    monkeypatch.setattr(os, "read", lambda fd, n: asked.append(n) or real_read(fd, n))
    assert fs.read(plan, "plan").raw == b"x" * 600
    assert asked == [601]
    asked.clear()
    monkeypatch.setattr(os, "read", lambda fd, n: asked.append(n) or real_read(fd, min(n, 100)))
    assert fs.read(plan, "plan").raw == b"x" * 600
    assert asked[0] == 601 and len(asked) > 2


def test_lines_are_capped_and_read_up_to_the_size_when_opened(vault):
    log = vault.root / "events.jsonl"
    cap = fs.LIMITS["event line"]
    log.write_bytes(b"a\n" + b"x" * (cap + 1) + b"\nb\n\nc")
    assert list(fs.lines(log, "event line")) == [(1, b"a"), (2, None), (3, b"b"), (4, b""),
                                                 (5, b"c")]
    gen = fs.lines(log, "event line")
    assert next(gen) == (1, b"a")
    with open(log, "ab") as f:
        f.write(b"\nmore\n" * 1000)  # appended after it was opened: not read
    assert [n for n, _ in gen] == [2, 3, 4, 5]


def test_every_limit_is_documented_in_the_bad_input_section():
    doc = (Path(__file__).parents[2] / "docs" / "daemon.md").read_text()
    section = doc.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    for kind, limit in fs.LIMITS.items():
        shown = f"{limit // (1 << 20)} MiB" if limit >= 1 << 20 else f"{limit // 1024} KiB"
        assert f"| {kind} | {shown} |" in section, (kind, shown)


# --- modes -------------------------------------------------------------------------------

@pytest.fixture
def umask():
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                        (0o007, 0o660, 0o770),
                                                        (0o077, 0o600, 0o700)])
def test_new_files_and_folders_take_their_mode_from_the_umask(vault, umask, mask, file_mode,
                                                              dir_mode):
    umask(mask)
    events = vault.root / ".modulatio" / "events.jsonl"
    EventLog(events)("test")
    atomic.write_new(vault.root / "P" / "plans" / "n.md", b"x")
    atomic.replace(vault.root / ".modulatio" / "state" / "r.json", b"x") \
        if fs.mkdirs(vault.root / ".modulatio" / "state") is None else None
    lock = FileLock(vault.root / "P" / "plans" / "n.lock")
    assert lock.try_acquire()
    lock.release()
    for path in (events, vault.root / "P" / "plans" / "n.md",
                 vault.root / ".modulatio" / "state" / "r.json",
                 vault.root / "P" / "plans" / "n.lock"):
        assert stat.S_IMODE(path.stat().st_mode) == file_mode, path
    for path in (vault.root / ".modulatio", vault.root / ".modulatio" / "state"):
        assert stat.S_IMODE(path.stat().st_mode) == dir_mode, path


def test_a_cap_keeps_logs_and_usage_no_more_readable_than_their_plan(vault, umask):
    plan = vault.root / "P" / "plans" / "P-P-001.md"
    plan.write_text("x")
    plan.chmod(0o640)
    usage.append(usage.usage_path(plan), [{"input_tokens": 1}])
    runs = plan.with_suffix(".runs")
    fs.mkdirs(runs, cap=fs.folder_cap(0o640))
    os.close(fs.open_regular(runs / "0-1.log", os.O_WRONLY | os.O_CREAT, cap=0o640))
    assert stat.S_IMODE(usage.usage_path(plan).stat().st_mode) == 0o640
    assert stat.S_IMODE(runs.stat().st_mode) == 0o750
    assert stat.S_IMODE((runs / "0-1.log").stat().st_mode) == 0o640


def test_a_new_file_in_a_setgid_folder_keeps_the_folders_group(vault, umask):
    if os.geteuid() != 0:
        pytest.skip("chgrp to a group we are not in needs root")
    folder = vault.root / ".modulatio"
    folder.mkdir()
    os.chown(folder, -1, 4242)
    folder.chmod(0o2770)
    EventLog(folder / "events.jsonl")("test")
    fs.mkdirs(folder / "state" / "P")
    assert (folder / "events.jsonl").stat().st_gid == 4242
    assert (folder / "state" / "P").stat().st_gid == 4242
    assert (folder / "state" / "P").stat().st_mode & stat.S_ISGID


# --- readers through the module -----------------------------------------------------------

def test_an_event_log_that_is_a_link_is_refused_with_a_message(vault, tmp_path, caplog):
    (vault.root / ".modulatio").mkdir()
    events = vault.root / ".modulatio" / "events.jsonl"
    events.symlink_to(tmp_path / "outside" / "secret")
    with caplog.at_level(logging.WARNING, logger="modulatio.events"):
        EventLog(events)("status_changed", plan="P-P-001")
    assert (tmp_path / "outside" / "secret").read_text() == "TOP-SECRET\n"
    assert "event not recorded" in caplog.text and "is a symbolic link" in caplog.text
    assert read_events(events) == [] and "TOP-SECRET" not in caplog.text


def test_paths_outside_every_vault_follow_their_folder_but_not_the_last_link(tmp_path, walk):
    # The metrics --output file: the operator's folder may be a link, the file may not.
    (tmp_path / "real").mkdir()
    (tmp_path / "via").symlink_to(tmp_path / "real")
    atomic.replace(tmp_path / "via" / "m.prom", b"1")
    assert (tmp_path / "real" / "m.prom").read_bytes() == b"1"
    (tmp_path / "real" / "l.prom").symlink_to(tmp_path / "real" / "m.prom")
    with pytest.raises(fs.Refused):
        fs.append(tmp_path / "via" / "l.prom", b"2")


# --- property: no path with a link on it is ever opened for writing ------------------------

NAMES = ["a", "b", "c"]
node = st.sampled_from(["dir", "file", "link-in-dir", "link-in-file", "link-out-dir",
                        "link-out-file", "link-dangling"])
trees = st.dictionaries(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(tuple),
                        node, min_size=1, max_size=12)
WRITES = ["append", "open_rdwr", "replace", "write_new", "rewrite", "mkdirs", "lock", "temp"]


def build(root: Path, outside: Path, spec: dict[tuple, str]) -> None:
    for parts, kind in sorted(spec.items(), key=lambda kv: len(kv[0])):
        parent = root.joinpath(*parts[:-1])
        if not parent.is_dir() or parent.is_symlink():
            continue  # its folder is a file or a link here: the node is not made
        p = parent / parts[-1]
        if os.path.lexists(p):
            continue
        targets = {"link-in-dir": root / "a", "link-in-file": root / "b",
                   "link-out-dir": outside, "link-out-file": outside / "secret",
                   "link-dangling": root / "nowhere"}
        if kind == "dir":
            p.mkdir()
        elif kind == "file":
            p.write_text("person\n")
        else:
            p.symlink_to(targets[kind])


def links_on_the_way(root: Path, parts: tuple) -> tuple[bool, bool]:
    """(a folder of the path is a link, the path itself is a link)."""
    p = root
    for i, part in enumerate(parts):
        p = p / part
        if p.is_symlink():
            return i < len(parts) - 1, i == len(parts) - 1
        if not p.exists():
            break
    return False, False


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=trees, target=st.lists(st.sampled_from(NAMES + ["new"]), min_size=1, max_size=4)
       .map(tuple), op=st.sampled_from(WRITES), use_walk=st.booleans())
def test_no_path_with_a_link_on_it_is_ever_opened_for_writing(tmp_path_factory, spec, target,
                                                              op, use_walk):
    base = tmp_path_factory.mktemp("prop")
    root, outside = base / "vault", base / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("TOP-SECRET\n")
    build(root, outside, spec)
    vault = Vault(root)  # noqa: F841 (registers the root: paths beneath it go through it)
    path = root.joinpath(*target)
    folder_linked, self_linked = links_on_the_way(root, target)
    before_out, before_in = tree_digest(outside), tree_digest(root)
    saved = fs.opening.USE_OPENAT2
    fs.opening.USE_OPENAT2 = saved and not use_walk
    try:
        if op == "append":
            fs.append(path, b"ours\n")
        elif op == "open_rdwr":
            os.close(fs.open_regular(path, os.O_RDWR | os.O_CREAT, folders=True))
        elif op == "replace":
            atomic.replace(path, b"ours\n")
        elif op == "write_new":
            atomic.write_new(path, b"ours\n")
        elif op == "rewrite":
            atomic.rewrite(path, lambda raw: raw + b"ours\n")
        elif op == "mkdirs":
            fs.mkdirs(path)
        elif op == "lock":
            lock = FileLock(path)
            if lock.try_acquire():
                lock.note_holder(pid=1)
                lock.release()
        else:
            fs.unlink(fs.temp(path, b"ours\n"))
        wrote = True
    except (OSError, BadFile):
        wrote = False
    finally:
        fs.opening.USE_OPENAT2 = saved
    assert tree_digest(outside) == before_out
    # A link among the folders is never entered; a link at the path itself is only ever
    # replaced by a rename (replace), never opened (temp files go beside it).
    if folder_linked or (self_linked and op not in ("replace", "temp")):
        assert not wrote
    after = tree_digest(root)
    for name, what in before_in.items():
        if after.get(name) != what:  # only the path itself, and only with no link on the way
            assert name == str(path) and not folder_linked, (name, what, after.get(name))
            assert not what.startswith("-> ") or op == "replace"


def test_an_append_is_written_under_an_flock_of_the_file(tmp_path, monkeypatch):
    # O_APPEND alone does not keep the records of two hosts apart on a network
    # filesystem (tests/multihost/test_soak_multihost.py): the write is made locked.
    Vault(tmp_path)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"")
    calls = []
    real_flock, real_write = fcntl.flock, os.write
    monkeypatch.setattr(fcntl, "flock", lambda fd, op: (calls.append(("flock", op)),
                                                        real_flock(fd, op))[1])
    monkeypatch.setattr(os, "write", lambda fd, data: (calls.append(("write", bytes(data))),
                                                       real_write(fd, data))[1])
    fs.append(path, b"one\n")
    assert calls == [("flock", fcntl.LOCK_EX | fcntl.LOCK_NB), ("write", b"one\n")]
    # released with the descriptor: another open file takes it at once
    other = os.open(path, os.O_RDONLY)
    try:
        real_flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)


def test_an_append_writes_without_the_flock_when_it_stays_held(tmp_path, monkeypatch,
                                                                caplog):
    Vault(tmp_path)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"old\n")
    monkeypatch.setattr(fs.appending, "APPEND_LOCK_WAIT_S", 0.0)
    holder = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # a reader that never lets go
        with caplog.at_level("WARNING", logger="modulatio.fs"):
            fs.append(path, b"new\n")
    finally:
        os.close(holder)
    assert path.read_bytes() == b"old\nnew\n"
    # Said, naming the file: a record that may interleave with another host's is no secret.
    assert [r.getMessage() for r in caplog.records] == [
        f"appending to {path} without its flock: still held elsewhere after 0 s, the file "
        f"not growing (last: {os.strerror(errno.EWOULDBLOCK)})"]


def test_locate_forgets_the_roots_let_go(tmp_path):
    """A process that made many vaults (a test session, a long-lived server) looks through
    the live roots only: a Root let go takes its key with it."""
    from modulatio_d.store.fs import opening

    folders = [tmp_path / f"v{i}" for i in range(50)]
    for f in folders:
        f.mkdir()
    roots = [opening.register(f) for f in folders]
    keys = {k for k, _ in opening._keys}
    assert {str(f) for f in folders} <= keys
    assert opening.locate(folders[7] / "a.md")[:2] == (roots[7], "a.md")
    del roots
    assert not {str(f) for f in folders} & {k for k, _ in opening._keys}
    assert opening.locate(folders[7] / "a.md")[2] is False  # no vault's root any more


def test_an_open_with_o_creat_answered_eexist_is_tried_again(tmp_path, monkeypatch):
    # GlusterFS's client answers EEXIST to a create (no O_EXCL) that met another host's
    # create of the same file at the same moment (tests/multihost/test_append_multihost.py):
    # the file is there, the next open opens it; an append is not lost to it.
    Vault(tmp_path)
    path = tmp_path / "events.jsonl"
    real, calls = fs.writing.open_beneath, []

    def racing(p, flags, mode=0o666):
        calls.append(flags)
        if len(calls) == 1:
            path.write_bytes(b"theirs\n")  # the other host's create and line
            raise FileExistsError(errno.EEXIST, "File exists", str(p))
        return real(p, flags, mode)

    monkeypatch.setattr(fs.writing, "open_beneath", racing)
    fs.append(path, b"ours\n")
    assert path.read_bytes() == b"theirs\nours\n" and len(calls) == 2
    calls.clear()
    with pytest.raises(FileExistsError):  # asked O_EXCL: EEXIST is the answer, not a race
        fs.open_regular(tmp_path / "new", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    assert len(calls) == 1


def test_an_append_walks_to_its_folder_only_when_the_folder_is_missing(vault, monkeypatch):
    """An append a step (events, usage) is one open: the folder is made only when the
    open finds it missing (a folder that is a link is still refused)."""
    made = []
    real = fs.writing.mkdirs
    monkeypatch.setattr(fs.writing, "mkdirs", lambda folder, cap=None: (
        made.append(Path(folder)), real(folder, cap)))
    target = vault.root / "P" / "new" / "x.jsonl"
    fs.append(target, b"1\n")
    assert made == [target.parent] and target.read_bytes() == b"1\n"
    fs.append(target, b"2\n")
    assert made == [target.parent] and target.read_bytes() == b"1\n2\n"
    (vault.root / "P" / "elsewhere").mkdir()
    os.symlink(vault.root / "P" / "elsewhere", vault.root / "P" / "link")
    with pytest.raises(fs.Refused):
        fs.append(vault.root / "P" / "link" / "x.jsonl", b"1\n")
    assert not (vault.root / "P" / "elsewhere" / "x.jsonl").exists()


def test_a_usage_append_looks_at_the_plans_mode_only_when_it_makes_the_file(vault, monkeypatch):
    plan = vault.root / "P" / "plans" / "P-P-001.md"
    plan.write_text("x")
    os.chmod(plan, 0o640)
    asked = []
    real = fs.mode_of
    monkeypatch.setattr(fs, "mode_of", lambda p: (asked.append(Path(p)), real(p))[1])
    for n in range(3):  # a line a step: one open each, no stat of the plan after the first
        usage.append(usage.usage_path(plan), [{"input_tokens": n}])
    assert asked == [plan]
    assert stat.S_IMODE(usage.usage_path(plan).stat().st_mode) == 0o640
    assert [json.loads(x)["input_tokens"] for x in
            usage.usage_path(plan).read_text().splitlines()] == [0, 1, 2]


class _LockMovingElsewhere:
    """A fake clock for store/fs/appending.py: each sleep of the waiting append is half a
    second, during which the others append a line (`grow`) while the lock stays taken,
    until `release_at` (then the holder lets go)."""

    def __init__(self, path, holder: int, release_at: float, grow: bool):
        self.t, self.path, self.holder, self.release_at, self.grow = 0.0, path, holder, \
            release_at, grow

    def monotonic(self) -> float:
        return self.t

    def sleep(self, _s: float) -> None:
        self.t += 0.5
        if self.grow:
            with open(self.path, "ab") as f:
                f.write(b"other\n")
        if self.t >= self.release_at and self.holder >= 0:
            os.close(self.holder)
            self.holder = -1


@pytest.mark.parametrize("grow, release_at, written_locked", [
    (True, 10.0, True),    # the lock moves between the others for 10 s: wait for it
    (False, 10.0, False),  # held 10 s by a holder that writes nothing: give up at 2 s
    (True, 60.0, False),   # the others never let it come: give up at APPEND_LOCK_MAX_S
])
def test_an_append_waits_for_its_flock_while_the_others_keep_appending(
        tmp_path, monkeypatch, caplog, grow, release_at, written_locked):
    """A writer that loses every try while the lock passes between the others (six
    daemons on three hosts at a soak's start) waits on; only a holder that makes no
    progress, or APPEND_LOCK_MAX_S in all, makes it write without the lock."""
    from modulatio_d.store.fs import appending

    Vault(tmp_path)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"old\n")
    holder = os.open(path, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    clock = _LockMovingElsewhere(path, holder, release_at, grow)
    monkeypatch.setattr(appending, "time", clock)
    try:
        with caplog.at_level("WARNING", logger="modulatio.fs"):
            fs.append(path, b"new\n")
    finally:
        if clock.holder >= 0:
            os.close(clock.holder)
    lines = path.read_bytes().splitlines()
    assert lines[0] == b"old" and lines.count(b"new") == 1
    if written_locked:  # after every line the others wrote while it waited
        assert lines[-1] == b"new" and clock.t >= release_at and caplog.records == []
    else:
        gave_up = appending.APPEND_LOCK_MAX_S if grow else appending.APPEND_LOCK_WAIT_S
        assert gave_up <= clock.t <= gave_up + 1.0
        [message] = [r.getMessage() for r in caplog.records]
        assert f"the file {'growing' if grow else 'not growing'} (last" in message

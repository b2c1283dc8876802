"""While a step runs, other plans' writes wake nothing (daemon/wake.py `focused`)."""

from __future__ import annotations

import os
import time

import pytest

from modulatio_d.daemon import inotify
from modulatio_d.daemon.wake import Waker


@pytest.fixture(params=["inotify", "watchdog"])
def watcher_kind(request, monkeypatch) -> str:
    """Each watcher test runs with daemon/inotify.py and with the watchdog fallback (a
    libc without inotify calls), which must tell the same changes."""
    if request.param == "watchdog":
        class NoInotify(inotify.Inotify):
            def __init__(self, tell):
                raise OSError(38, "inotify_init1 not here (the test)")
        monkeypatch.setattr(inotify, "Inotify", NoInotify)
    return request.param


def test_a_focused_waker_is_woken_by_its_plan_only_and_the_rest_is_taken_later():
    waker = Waker()
    try:
        mine, other = "/v/B/plans/B-P-001.md", "/v/C/plans/C-P-002.md"
        with waker.focused(mine):
            waker.poke(other)  # another plan written: queued, no wake-up
            assert waker.wait(0) is False
            waker.poke(mine)  # its own plan (a person's abort): wakes
            assert waker.wait(0) is True
            waker.poke()  # not a plan (a signal, the config, pause.yaml): wakes
            assert waker.wait(0) is True
            waker.poke(other)
        assert waker.wait(5.0) is True  # the first wait after it returns at once
        assert waker.take_changed() == {other, mine, ""}
        assert waker.wait(0) is False  # nothing held back: a wait as before
    finally:
        waker.close()


def test_a_mode_change_or_a_write_wakes_nobody_until_the_file_is_closed(tmp_path,
                                                                     watcher_kind):
    """Every daemon's watcher sees every daemon's writes: a write is told once, at its
    close, and a chmod not at all (the tick sees it). inotify keeps the order of a
    folder's events, so the marker's wake-up comes after any the writes made."""
    from modulatio_d.daemon.wake import Watcher

    plan, marker = tmp_path / "P-P-001.md", tmp_path / "P-P-002.md"
    plan.write_text("x")
    waker = Waker()
    watcher = Watcher(waker)
    try:
        watcher.watch([tmp_path])
        assert isinstance(watcher.observer, inotify.Inotify) == (watcher_kind == "inotify")
        with plan.open("a") as f:
            f.write("y")
            f.flush()
            os.chmod(plan, 0o600)
            marker.write_text("z")  # created, written, closed: its events come after
            assert str(plan) not in _woken_by(waker, str(marker))  # the write still open
        assert str(plan) in _woken_by(waker, str(plan))  # closed: told now
    finally:
        watcher.stop()
        waker.close()


def _woken_by(waker: Waker, path: str) -> set[str]:
    """The changes told until `path` is among them (waits for it, up to 10 s)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 10
    while path not in seen and time.monotonic() < deadline:
        waker.wait(deadline - time.monotonic())
        seen |= waker.take_changed()
    return seen


def test_the_watcher_tells_plans_moves_folders_and_the_config_as_before(tmp_path,
                                                                      watcher_kind):
    """What wakes the daemon: a plan saved by rename (either half of the move), a folder
    made, the config; a step's log folder made, a temp file or a usage line do not."""
    from modulatio_d.daemon.wake import Watcher

    waker = Waker()
    watcher = Watcher(waker)
    try:
        watcher.watch([tmp_path])
        (tmp_path / ".P-P-001.md.x.tmp").write_text("x")
        (tmp_path / "P-P-001.usage.jsonl").write_text("{}\n")
        (tmp_path / "P-P-001.runs").mkdir()
        os.rename(tmp_path / ".P-P-001.md.x.tmp", tmp_path / "P-P-001.md")
        assert _woken_by(waker, str(tmp_path / "P-P-001.md")) == {
            str(tmp_path / "P-P-001.md")}  # nothing for the temp file, usage, .runs/
        (tmp_path / "newproject").mkdir()
        assert _woken_by(waker, "") == {""}
        (tmp_path / "config.yaml").write_text("x: 1\n")
        assert _woken_by(waker, "") == {""}
        os.rename(tmp_path / "P-P-001.md", tmp_path / "P-P-001.md.bak")  # moved away: told
        # (with perhaps the config's second event, its close, still to come: "")
        assert _woken_by(waker, str(tmp_path / "P-P-001.md")) - {""} == {
            str(tmp_path / "P-P-001.md")}
        (tmp_path / "newproject").rmdir()
        watcher.watch([tmp_path])  # still watched: one watch, no wake-up of its own
        assert len(watcher.watched) == 1
    finally:
        watcher.stop()
        waker.close()


def test_a_folder_removed_and_made_again_is_watched_again(tmp_path):
    from modulatio_d.daemon.wake import Watcher

    sub = tmp_path / "plans"
    sub.mkdir()
    waker = Waker()
    watcher = Watcher(waker)
    try:
        assert watcher.watch([sub]) == 1
        handle = watcher.watched[sub]
        sub.rmdir()
        sub.mkdir()  # before the next tick: is_dir() alone would keep the dead watch
        deadline = time.monotonic() + 10
        while watcher.observer.alive(handle) and time.monotonic() < deadline:
            time.sleep(0.001)  # the kernel's IN_IGNORED reaches the watcher
        assert watcher.watch([sub]) == 1
        (sub / "P-P-001.md").write_text("x")
        assert str(sub / "P-P-001.md") in _woken_by(waker, str(sub / "P-P-001.md"))
    finally:
        watcher.stop()
        waker.close()


def test_the_folders_are_listed_again_after_a_folder_event_or_a_second_only():
    """Plans run back to back do not list the vault at every pass (Watcher.due): a folder
    made (or the kernel's queue overflowing) makes the next pass list it; a plan's
    .runs/ folder and the daemons' own folders in .modulatio/ do not (nor do they wake
    the daemon into a scan); a second passed does."""
    from modulatio_d.daemon.wake import RELIST_S, Watcher

    now = [100.0]
    waker = Waker()
    watcher = Watcher(waker, lambda: now[0])
    try:
        assert watcher.due()  # never listed
        watcher.watch([])
        assert not watcher.due()
        watcher.tell("/v/B/plans/B-P-001.runs", True)  # a plan's first step
        watcher.tell("/v/B/plans/B-P-001.md", False)  # a plan written
        watcher.tell("/v/.modulatio/daemons", True)  # a new vault's first heartbeat
        watcher.tell("/v/.modulatio/state", True)  # ...and first claim
        assert not watcher.due()
        assert waker.take_changed() == {"/v/B/plans/B-P-001.md"}  # no "": no scan
        watcher.tell("/v/.modulatio/slots", True)  # watched: a slot freed wakes waiters
        assert watcher.due() and waker.take_changed() == {""}
        watcher.watch([])
        watcher.tell("/v/NEW", True)  # a folder made: maybe a project
        assert watcher.due()
        watcher.watch([])
        watcher.tell(None, False)  # the kernel's queue overflowed: anything may have
        assert watcher.due()
        watcher.watch([])
        now[0] += RELIST_S
        assert watcher.due()
    finally:
        watcher.stop()
        waker.close()


def test_inotify_is_read_on_the_daemons_thread_when_it_waits_or_looks(tmp_path):
    """No thread of its own (a wake-up and a hand-over of the interpreter's lock an
    event cost 1.4 ms of CPU a plan): the kernel's queue is read when the daemon waits,
    takes the changes or asks whether to list the folders again."""
    import threading

    from modulatio_d.daemon.wake import Watcher

    threads = threading.active_count()
    waker = Waker()
    watcher = Watcher(waker)
    try:
        watcher.watch([tmp_path])
        assert isinstance(watcher.observer, inotify.Inotify)
        assert threading.active_count() == threads
        (tmp_path / "P-P-001.md").write_text("x")
        assert waker.take_changed() == {str(tmp_path / "P-P-001.md")}  # no wait needed
        (tmp_path / "P-P-002.md").write_text("x")
        assert waker.wait(10) is True and waker.take_changed() == {
            str(tmp_path / "P-P-002.md")}
        watcher.watch([tmp_path])
        assert not watcher.due()
        (tmp_path / "NEW").mkdir()
        assert watcher.due()  # read at the question, as a thread would have by then
    finally:
        watcher.stop()
        watcher.stop()  # twice: nothing more to close
        waker.close()
    assert waker.take_changed() == {""}  # the folder's; the descriptor is no longer read


def test_a_focused_wait_reads_other_plans_writes_and_goes_on_to_its_deadline(tmp_path,
                                                                            watcher_kind):
    """While focused, other plans' writes arriving without pause neither wake the wait
    nor keep it past its time; its own plan's write wakes it."""
    import threading

    from modulatio_d.daemon.wake import Watcher

    mine, other = tmp_path / "P-P-001.md", tmp_path / "P-P-002.md"
    waker = Waker()
    watcher = Watcher(waker)
    stop = threading.Event()

    def writes() -> None:
        while not stop.is_set():
            other.write_text("x")

    writer = threading.Thread(target=writes)
    try:
        watcher.watch([tmp_path])
        with waker.focused(mine):  # first: watchdog's threads tell as the writes come
            writer.start()
            assert _woken_by_other(waker, other)  # told (queued), never a wake-up
            start = time.monotonic()
            assert waker.wait(0.2) is False
            assert time.monotonic() - start < 5  # its deadline held under the stream
            mine.write_text("x")
            deadline = time.monotonic() + 10
            while not waker.wait(deadline - time.monotonic()) \
                    and time.monotonic() < deadline:
                pass
            assert str(mine) in waker.take_changed()
    finally:
        stop.set()
        if writer.is_alive():
            writer.join()
        watcher.stop()
        waker.close()


def _woken_by_other(waker: Waker, other) -> bool:
    """Waits (up to 10 s) until the other plan's write is queued; False if any wait
    returned woken on the way."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if waker.wait(0.05):
            return False
        if str(other) in waker.take_changed():
            return True
    return False

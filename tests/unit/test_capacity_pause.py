"""Capacity rules (core/capacity.py), slots (store/slots.py), the pause file
(store/pause.py) and a daemon's config under a refused capacity (daemon/settings.py).
In-process, no daemon: flock contends between two descriptors of one process."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from fakes import FakeClock

from modulatio_d.core.capacity import Capacity
from modulatio_d.core.errors import BadFile
from modulatio_d.daemon.loop import Daemon
from modulatio_d.store import config, pause, slots


def write(path, text: str) -> None:
    path.write_text(text)


@pytest.mark.parametrize("text, line, words", [
    ("capacity: 3\n", 1, "must be a mapping"),
    ("capacity:\n  vault: -1\n", 2, "vault must be a whole number"),
    ("capacity:\n  vault: 100001\n", 2, "from 0 to 10000"),
    ("capacity:\n  vault: true\n", 2, "vault must be"),
    ("capacity:\n  projects:\n    SALES: 2\n    OPS: two\n", 4, "projects.OPS"),
    ("capacity:\n  projects: [1]\n", 1, "projects must map"),
    ("capacity:\n  vault: 2\n  headroom: {slots: 3, min_priority: 80}\n", 1, "more than vault"),
    ("capacity:\n  headroom: {slots: 1, min_priority: 80}\n", 1, "vault is not set"),
    ("capacity:\n  vault: 2\n  headroom: {slots: 1}\n", 1, "exactly slots and min_priority"),
    ("capacity:\n  vault: 2\n  spare: 1\n", 1, "unknown keys"),
])
def test_a_bad_capacity_is_refused_with_its_line(tmp_path, text, line, words):
    path = tmp_path / "config.yaml"
    write(path, text)
    with pytest.raises(BadFile) as e:
        config.load(path)
    assert e.value.line == line and words in str(e.value), str(e.value)
    assert f"config.yaml:{line}" in str(e.value)


def test_capacity_and_headroom_pick_the_slots_a_priority_may_try(tmp_path):
    path = tmp_path / "config.yaml"
    write(path, "capacity:\n  vault: 3\n  projects: {SALES: 2, OPS: 0}\n"
                "  headroom: {slots: 1, min_priority: 80}\n")
    cap = config.load(path).capacity
    assert cap.vault_slots(10) == [0, 1] and cap.vault_slots(79) == [0, 1]
    assert cap.vault_slots(80) == [0, 1, 2]  # the normal slots first
    assert cap.project_limit("SALES") == 2 and cap.project_limit("OPS") == 0
    assert cap.project_limit("OTHER") is None
    assert Capacity().vault_slots(99) is None and not Capacity().limited
    assert Capacity(closed=True).limited


def group(tmp_path, numbers, limit=None) -> slots.Group:
    return slots.Group(tmp_path / "slots" / "vault", tuple(numbers),
                       limit if limit is not None else len(numbers), "vault")


def test_slots_exclude_take_all_or_none_and_release(tmp_path):
    g = group(tmp_path, [0, 1])
    p = slots.Group(tmp_path / "slots" / "projects" / "P", (0,), 1, "project P")
    first = slots.take_all([p, g], plan="A")
    assert isinstance(first, slots.Held) and len(first.fds) == 2
    second = slots.take_all([g], plan="B")  # slot 1 of the vault is free
    assert isinstance(second, slots.Held)
    third = slots.take_all([g], plan="C")
    assert third is g  # full: the group is answered
    other = slots.Group(tmp_path / "slots" / "projects" / "Q", (0,), 1, "project Q")
    assert slots.take_all([other, g], plan="D") is g
    assert slots.take_all([other], plan="E") is not other  # D's Q slot was let go
    held = sorted(h["plan"] for h in slots.probe(g.folder))
    assert held == ["A", "B"]
    first.release()
    assert (tmp_path / "slots" / slots.FREED).exists()  # the waiters' wake-up
    assert [h["plan"] for h in slots.probe(g.folder)] == ["B"]
    assert isinstance(slots.take_all([g], plan="F"), slots.Held)


def test_a_lowered_limit_counts_the_slots_still_held_above_it(tmp_path):
    wide = group(tmp_path, [0, 1, 2])
    held = [slots.take_all([wide], plan=x) for x in "ABC"]
    assert all(isinstance(h, slots.Held) for h in held)
    held[0].release()  # slot 0 frees, but 1 and 2 still run: a limit of 2 is full
    narrow = group(tmp_path, [0, 1], limit=2)
    assert slots.take_all([narrow], plan="D") is narrow
    held[2].release()
    assert isinstance(slots.take_all([narrow], plan="D"), slots.Held)


def test_a_slot_file_deleted_while_held_is_noticed(tmp_path):
    g = group(tmp_path, [0])
    held = slots.take_all([g], plan="A")
    assert held.lost() is None
    os.unlink(slots.slot_path(g.folder, 0))
    path, how = held.lost()
    assert path == slots.slot_path(g.folder, 0) and how == "deleted"


def test_the_pause_file_round_trips_and_resume_removes_it(tmp_path):
    meta = tmp_path / ".modulatio"
    meta.mkdir()
    at = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    pause.change(meta, None, pause.Pause("al: \"x\"", at, "upgrade\nnow", True))
    pause.change(meta, "SALES", pause.Pause("bo", at, ""))
    state = pause.load(pause.path_of(meta))
    assert state.vault == pause.Pause("al: \"x\"", at, "upgrade\nnow", True)
    assert state.of("OPS") is state.vault and state.projects["SALES"].by == "bo"
    pause.change(meta, None, None)
    state = pause.load(pause.path_of(meta))
    assert state.vault is None and state.of("SALES").by == "bo" and state.of("OPS") is None
    pause.change(meta, "SALES", None)
    assert not pause.path_of(meta).exists() and not pause.load(pause.path_of(meta)).any


@pytest.mark.parametrize("text, line", [
    ("vault: yes\n", 1),
    ("vault: {by: me, at: soon}\n", 1),
    ("projects:\n  SALES: {by: me, now: maybe}\n", 2),
    ("projects:\n  'bad code': {by: me}\n", 2),
    ("paused: true\n", 1),
    ("vault: [\n", 2),
    ("\n  \n", 1),  # empty: an editor's save half done, not "nothing paused"
])
def test_a_bad_pause_file_is_refused_with_its_line_and_the_state_before_stays(
        tmp_path, text, line):
    meta = tmp_path / ".modulatio"
    meta.mkdir()
    path = pause.path_of(meta)
    watch = pause.Watch(meta)
    assert watch.refresh() and not watch.state.any  # no file: nothing paused
    write(path, text)
    assert watch.refresh()
    assert watch.error is not None and watch.error.line == line, str(watch.error)
    assert not watch.state.any  # the state before stays: not paused
    fresh = pause.Watch(meta)  # one that never read a good file: all paused
    fresh.refresh()
    assert fresh.state.of("ANY") is not None and fresh.state.unreadable
    if text.strip():
        with pytest.raises(BadFile):  # and no command writes over a person's text
            pause.change(meta, None, pause.Pause("x", None))
    else:  # nothing of a person's to keep: a command may replace an empty file
        assert pause.change(meta, None, pause.Pause("x", None)).vault.by == "x"
    path.unlink()
    assert fresh.refresh() and not fresh.state.any and fresh.error is None


def test_a_refused_config_that_may_set_a_capacity_admits_nothing_at_start(vault):
    clock = FakeClock()
    write(vault.config_path, "capacity:\n  vault: lots\n")
    d = Daemon(vault, [], 1.0, True, clock.wall, {}, monotonic=clock.monotonic)
    d._load_config()
    assert d.config.capacity.closed
    write(vault.config_path, "capacity:\n  vault: 2\n")
    d._load_config()
    assert d.config.capacity == Capacity(vault=2)
    write(vault.config_path, "capacity:\n  vault: 2\n  bogus: [\n")  # bad later: 2 stays
    d._load_config()
    assert d.config.capacity == Capacity(vault=2)
    other = Daemon(vault, [], 1.0, True, clock.wall, {}, monotonic=clock.monotonic)
    write(vault.config_path, "agents: 3\n")  # refused, but sets no capacity: no limit
    other._load_config()
    assert not other.config.capacity.limited
    d.waker.close()
    other.waker.close()


def test_a_config_emptied_under_a_capacity_applies_only_once_settled(vault):
    clock = FakeClock()
    write(vault.config_path, "capacity:\n  vault: 2\n")
    d = Daemon(vault, [], 1.0, True, clock.wall, {}, monotonic=clock.monotonic)
    d._load_config()
    assert d.config.capacity == Capacity(vault=2)
    write(vault.config_path, "")  # an editor's in-place save, truncated first
    d._load_config()
    assert d.config.capacity == Capacity(vault=2)
    old = os.stat(vault.config_path).st_mtime - 10
    os.utime(vault.config_path, (old, old))  # left empty: a person's choice, applied
    d._load_config()
    assert not d.config.capacity.limited
    d.waker.close()


def test_a_slot_file_that_cannot_be_used_makes_the_plan_wait_not_the_daemon_die(vault):
    from modulatio_d.core.plan import PlanStatus
    from modulatio_d.daemon.admission import Admission
    from modulatio_d.daemon.scan import Candidate

    told = []
    admission = Admission(vault, lambda kind, **f: told.append((kind, f)), "h", 1)
    folder = slots.vault_group(vault.meta)
    folder.mkdir(parents=True)
    os.symlink("/etc/passwd", slots.slot_path(folder, 0))  # never followed, never locked
    c = Candidate((-50, 0.0, "P-1"), vault.plan_path("P", "P-1"), "P", PlanStatus.APPROVED)
    assert admission.take(c, Capacity(vault=1)) is None
    assert admission.waiting == {"P-1": "slots unusable"}
    assert told == [("slot_wait", {"project": "P", "plan": "P-1", "limit": "slots unusable"})]


def test_drain_waits_for_the_running_plans_then_looks_at_the_whole_scope(vault, monkeypatch):
    from modulatio_d.ops import pausing

    looks = []
    state = {"full": [[("P", "A"), ("P", "B")], [("P", "C")], []], "runs": {"A", "B", "C"}}

    def running(v, project):
        looks.append("all")
        return state["full"].pop(0)

    def runs(path):
        looks.append(path.stem)
        return path.stem in state["runs"]

    monkeypatch.setattr(pausing, "running", running)
    monkeypatch.setattr(pausing, "_runs", runs)
    t = [0.0]

    def sleep(s):
        t[0] += s
        state["runs"].discard({0.2: "A", 0.4: "B"}.get(round(t[0], 1), ""))
        if round(t[0], 1) == 0.6:
            state["runs"].discard("C")

    assert pausing.wait_drained(vault, None, None, clock=lambda: t[0], sleep=sleep) == []
    # one full look, then only A and B, a full look finding C (claimed meanwhile), C alone,
    # and a last full look before "drained"
    assert looks == ["all", "A", "B", "B", "all", "C", "all"]
    state["full"] = [[("P", "D")]]
    state["runs"] = {"D"}
    looks.clear()
    assert pausing.wait_drained(vault, None, 0.5, clock=lambda: t[0], sleep=sleep) \
        == [("P", "D")]

"""The scan on a fake clock: a plan held off after its writes failed comes back after
its time; a bad file changed in the last SETTLE_S seconds is not judged yet."""

from __future__ import annotations

import os
from datetime import timedelta

from fakes import Events, FakeClock, write_plan

from modulatio_d.daemon.scan import Scanner
from modulatio_d.store.vault import SETTLE_S


def test_a_held_off_plan_is_offered_again_after_its_time(vault):
    clock = FakeClock()
    path = write_plan(vault, ["one"])
    other = write_plan(vault, ["one"], plan_id="P-P-002")
    scanner = Scanner(vault, None, Events(), monotonic=clock.monotonic)
    assert [c.path for c in scanner.scan(clock.wall())] == [path, other]
    scanner.hold_off(path, 10.0)
    assert [c.path for c in scanner.scan(clock.wall())] == [other]
    clock.advance(9.5)
    assert [c.path for c in scanner.scan(clock.wall())] == [other]
    assert scanner.look_at({str(path)}, clock.wall()) == []  # a file event does not hurry it
    clock.advance(0.5)
    assert [c.path for c in scanner.scan(clock.wall())] == [path, other]


def test_a_bad_plan_is_judged_only_once_it_settled(vault):
    clock = FakeClock()
    path = write_plan(vault, ["one"])
    path.write_text(path.read_text().replace("sub_objectives:", "sub_objectives: [a\n"))
    saved = clock.wall().timestamp()
    os.utime(path, (saved, saved))
    events = Events()
    scanner = Scanner(vault, None, events, monotonic=clock.monotonic)
    assert scanner.scan(clock.wall()) == []
    assert scanner.scan(clock.wall() + timedelta(seconds=SETTLE_S - 0.01)) == []
    assert events == []  # maybe an editor half way through its save
    assert scanner.scan(clock.wall() + timedelta(seconds=SETTLE_S)) == []
    assert events.kinds() == ["file_refused"]
    assert events[0][1]["path"] == "P/plans/P-P-001.md"


def test_a_status_the_cheap_look_cannot_read_is_parsed_not_passed_over(vault):
    """`status: >-` then `approved` on the next line: the regex cannot tell, the parse can."""
    clock = FakeClock()
    path = write_plan(vault, ["one"])
    path.write_text(path.read_text().replace("status: approved", "status: >-\n  approved"))
    draft = write_plan(vault, ["one"], plan_id="P-P-002")
    draft.write_text(draft.read_text().replace("status: approved", "status: |\n  draft"))
    scanner = Scanner(vault, None, Events(), monotonic=clock.monotonic)
    assert [c.path for c in scanner.scan(clock.wall())] == [path]


def test_a_bad_value_in_a_plan_is_refused_at_the_scan_with_its_line(vault):
    clock = FakeClock()
    path = write_plan(vault, ["{run: 'true'}"], extra="reflection_log: [1, 2]")
    path.write_text(path.read_text().replace("reflection_log: []\n", ""))
    os.utime(path, (0, 0))
    events = Events()
    scanner = Scanner(vault, None, events, monotonic=clock.monotonic)
    assert scanner.scan(clock.wall()) == []
    ((kind, fields),) = events
    assert kind == "file_refused" and fields["line"] == 8
    assert "reflection_log entry 1 is 1, not a mapping" in fields["reason"]


def test_a_reader_that_raises_costs_its_file_not_the_scan(vault, monkeypatch):
    from modulatio_d.store import plan_file

    clock = FakeClock()
    bad = write_plan(vault, ["one"])
    good = write_plan(vault, ["one"], plan_id="P-P-002")
    real = plan_file.parse_plan

    def parse(doc, expected_id=None):
        if expected_id == bad.stem:
            raise ZeroDivisionError("a reader's bug")
        return real(doc, expected_id)
    monkeypatch.setattr(plan_file, "parse_plan", parse)
    events = Events()
    scanner = Scanner(vault, None, events, monotonic=clock.monotonic)
    assert [c.path for c in scanner.scan(clock.wall())] == [good]
    assert [f["reason"] for _, f in events] == [
        "could not be read (ZeroDivisionError: a reader's bug); please report it"]


def test_a_look_at_changed_plans_lists_no_folder_of_the_vault(vault, monkeypatch):
    """A look follows every plan that ends (candidates.py): the plan file found beneath
    the root with no link on the way makes its folder a project, so the look does not
    list the vault (vault.projects) to know which folders are served."""
    clock = FakeClock()
    path = write_plan(vault, ["one"])
    odd = vault.root / "no code" / "plans" / "P-P-001.md"  # a name no project can have
    odd.parent.mkdir(parents=True)
    odd.write_text(path.read_text())
    listed = []
    monkeypatch.setattr(type(vault), "projects", lambda self: listed.append(1) or ["P"])
    scanner = Scanner(vault, None, Events(), monotonic=clock.monotonic)
    assert [c.path for c in scanner.look_at({str(path), str(odd)}, clock.wall())] == [path]
    assert listed == []
    assert Scanner(vault, ["Q"], Events(), monotonic=clock.monotonic).look_at(
        {str(path)}, clock.wall()) == []  # a daemon serving other projects: not its plan


def test_a_first_scan_opens_each_plan_without_an_lstat_and_a_tick_lstats_only(vault,
                                                                              monkeypatch):
    """A plan not kept is opened by name and judged on its fstat; a kept one costs one
    lstat at a tick and no open (the idle tick's stat signatures)."""
    clock = FakeClock()
    paths = [write_plan(vault, ["one"], plan_id=f"P-P-00{i}") for i in range(1, 4)]
    names = {p.name for p in paths}
    calls = []
    real_stat, real_open = os.stat, os.open

    def stat(path, *a, **k):
        if os.fspath(path) in names:
            calls.append(("lstat", os.fspath(path)))
        return real_stat(path, *a, **k)

    def open_(path, *a, **k):
        if os.path.basename(os.fspath(path)) in names:
            calls.append(("open", os.path.basename(os.fspath(path))))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "open", open_)
    scanner = Scanner(vault, None, Events(), monotonic=clock.monotonic)
    assert [c.path for c in scanner.scan(clock.wall())] == paths
    assert sorted(calls) == sorted(("open", n) for n in names)
    calls.clear()
    assert [c.path for c in scanner.scan(clock.wall())] == paths
    assert sorted(calls) == sorted(("lstat", n) for n in names)


def test_a_look_after_the_run_reads_the_plan_only_if_it_is_not_the_daemons_last_write(
        vault, monkeypatch):
    """Scanner.wrote: the look that follows a run (inotify saw its writes) reads nothing
    while the file is the run's last write and left the plan unclaimable; any other
    file there, or a plan left claimable, is read as before."""
    from modulatio_d.core.plan import PlanStatus
    from modulatio_d.store.fs import signature

    clock = FakeClock()
    path = write_plan(vault, ["one"])
    scanner = Scanner(vault, None, Events(), monotonic=clock.monotonic)
    assert [c.path for c in scanner.scan(clock.wall())] == [path]
    reads = []
    real = vault.read
    monkeypatch.setattr(vault, "read", lambda *a, **k: reads.append(a[0]) or real(*a, **k))

    path.write_text(path.read_text().replace("status: approved", "status: completed"))
    scanner.wrote(path, signature(os.stat(path)), PlanStatus.COMPLETED)
    assert scanner.look_at({str(path)}, clock.wall()) == [] and reads == []

    for status, noted in ((PlanStatus.EXECUTING, "executing"), (PlanStatus.APPROVED, "approved")):
        path.write_text(path.read_text().replace("status: completed", f"status: {noted}")
                        .replace("status: approved", f"status: {noted}"))
        scanner.wrote(path, signature(os.stat(path)), status)  # claimable: not noted
        reads.clear()
        assert [c.path for c in scanner.look_at({str(path)}, clock.wall())] == [path]
        assert reads == [str(path)]

    path.write_text(path.read_text().replace("status: approved", "status: completed"))
    written = signature(os.stat(path))
    path.write_text(path.read_text().replace("status: completed", "status: approved"))
    scanner.wrote(path, written, PlanStatus.COMPLETED)  # a person saved after the write
    reads.clear()
    assert [c.path for c in scanner.look_at({str(path)}, clock.wall())] == [path]
    assert reads == [str(path)]

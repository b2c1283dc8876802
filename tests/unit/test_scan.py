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

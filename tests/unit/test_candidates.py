"""The order daemons try plans in, and the rest of a scan tried plan by plan
(daemon/candidates.py); the scan forgets files that went away (daemon/scan.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from fakes import Events, FakeClock, write_plan

from modulatio_d.core.plan import PlanStatus
from modulatio_d.daemon.candidates import Candidates, changed_plans, ordered, rank_among
from modulatio_d.daemon.scan import Candidate, Scanner
from modulatio_d.daemon.wake import Waker


def cand(priority: int, n: int) -> Candidate:
    return Candidate((-priority, float(n), f"P-P-{n:03d}"), Path(f"/v/P/plans/P-P-{n:03d}.md"),
                     "P", PlanStatus.APPROVED)


def ids(cs) -> list[int]:
    return [int(c.sort_key[2][-3:]) for c in cs]


def test_one_daemon_tries_every_plan_in_the_documented_order():
    cs = sorted([cand(50, n) for n in range(5)] + [cand(90, 9), cand(10, 7)])
    assert ordered(cs, 0, 1) == cs


def test_daemons_start_apart_within_a_priority_class_and_keep_the_classes_in_order():
    cs = sorted([cand(90, 8), cand(90, 9)] + [cand(50, n) for n in range(7)] + [cand(10, 20)])
    assert ids(ordered(cs, 0, 3)) == [8, 9, 0, 3, 6, 1, 4, 2, 5, 20]
    assert ids(ordered(cs, 1, 3)) == [9, 8, 1, 4, 2, 5, 0, 3, 6, 20]
    assert ids(ordered(cs, 2, 3)) == [8, 9, 2, 5, 0, 3, 6, 1, 4, 20]
    firsts = {ids(ordered(cs[2:9], k, 3))[0] for k in range(3)}
    assert firsts == {0, 1, 2}  # three daemons, three different first plans
    for k in range(3):
        assert sorted(ordered(cs, k, 3)) == cs  # every plan, once


def test_the_rank_is_the_place_of_the_daemons_heartbeat_its_own_counted(tmp_path):
    assert rank_among(tmp_path / "missing", "h.5.json") == (0, 1)
    for name in ("h.3.json", "h.9.json", "h.3.json.tmp"):
        (tmp_path / name).write_text("{}")
    assert rank_among(tmp_path, "h.5.json") == (1, 3)
    assert rank_among(tmp_path, "h.9.json") == (1, 2)


def test_changed_plans_are_told_apart_from_cron_entries_and_tickets():
    plan, cron = "/v/P/plans/P-P-001.md", "/v/P/cron/P-C-001.md"
    assert changed_plans({plan}) == {plan}
    assert changed_plans(set()) == set()
    assert changed_plans({plan, cron}) is None
    assert changed_plans({plan, ""}) is None  # "": the config, a folder (Waker.poke)


def test_a_wake_up_says_whether_something_other_than_a_file_changed():
    waker = Waker()
    try:
        waker.poke("/v/P/plans/P-P-001.md")
        waker.poke()
        assert waker.take_changed() == {"/v/P/plans/P-P-001.md", ""}
        assert waker.take_changed() == set()
    finally:
        waker.close()


def test_a_plan_waiting_for_another_is_kept_to_be_looked_at_when_that_one_ends(vault):
    clock = FakeClock()
    first = write_plan(vault, ["one"], plan_id="P-P-003")  # P-P-001 in the text is the id
    then = write_plan(vault, ["one"], plan_id="P-P-002", extra="after: [P-P-003]")
    scanner = Scanner(vault, None, Events(), monotonic=clock.monotonic)
    assert [c.path for c in scanner.scan(clock.wall())] == [first]
    assert scanner.waiting == {str(then)}
    first.write_text(first.read_text().replace("status: approved", "status: completed"))
    assert [c.path for c in scanner.look_at(scanner.waiting, clock.wall())] == [then]
    assert scanner.waiting == set()


def test_after_a_plan_ran_the_rest_is_looked_at_alone_and_a_scan_comes_when_it_runs_out(
        vault, tmp_path):
    clock = FakeClock()
    paths = [write_plan(vault, ["one"], plan_id=f"P-P-00{n}") for n in range(1, 4)]
    scanner = Scanner(vault, None, Events(), monotonic=clock.monotonic)
    pending = Candidates(scanner, tmp_path, "h.1.json", clock.wall, clock.monotonic, 30.0)
    assert pending.scan_due(set())
    pending.fill(scanner.scan(clock.wall()))
    assert pending.fresh and pending.scans == 1
    tried = iter(pending)
    assert next(tried).path == paths[0]
    pending.ran()  # the first one ran; meanwhile the second was taken by another daemon
    for done in paths[:2]:
        done.write_text(done.read_text().replace("status: approved", "status: completed"))
    assert not pending.scan_due({str(paths[1]), str(paths[0])})  # nothing newly claimable
    assert [c.path for c in pending] == [paths[2]]  # the second one skipped, no scan
    assert pending.scans == 1
    assert pending.scan_due(set())  # ran out


def test_a_scan_is_due_when_the_list_is_a_tick_old_or_something_else_changed(vault, tmp_path):
    clock = FakeClock()
    for n in range(1, 3):
        write_plan(vault, ["one"], plan_id=f"P-P-00{n}")
    scanner = Scanner(vault, None, Events(), monotonic=clock.monotonic)
    pending = Candidates(scanner, tmp_path, "h.1.json", clock.wall, clock.monotonic, 30.0)
    pending.fill(scanner.scan(clock.wall()))
    assert not pending.scan_due(set())
    assert pending.scan_due({str(vault.root / "P" / "tickets" / "P-T-001.md")})
    new = write_plan(vault, ["one"], plan_id="P-P-009")  # approved while a plan ran
    assert pending.scan_due({str(new)})
    clock.advance(30.0)
    assert pending.scan_due(set())


def test_the_scan_forgets_a_deleted_plan_and_sees_it_again_when_it_comes_back(vault):
    clock = FakeClock()
    path = write_plan(vault, ["one"])
    keep = write_plan(vault, ["one"], plan_id="P-P-002")
    scanner = Scanner(vault, None, Events(), monotonic=clock.monotonic)
    assert [c.path for c in scanner.scan(clock.wall())] == [path, keep]
    text = path.read_text()
    path.unlink()
    assert [c.path for c in scanner.scan(clock.wall())] == [keep]
    assert set(scanner._seen["P"]) == {keep.name}
    path.write_text(text)
    assert {c.path for c in scanner.scan(clock.wall())} == {path, keep}


def test_the_scan_opening_plans_by_name_still_refuses_a_linked_one_and_says_why(vault,
                                                                                tmp_path):
    clock = FakeClock()
    outside = tmp_path / "outside.md"
    outside.write_text(write_plan(vault, ["one"]).read_text())
    link = vault.plan_path("P", "P-P-002")
    link.symlink_to(outside)
    events = Events()
    scanner = Scanner(vault, None, events, monotonic=clock.monotonic)
    settled = datetime.now(UTC) + timedelta(minutes=1)  # past SETTLE_S: judged
    assert [c.path.name for c in scanner.scan(settled)] == ["P-P-001.md"]
    refused = [e for k, e in events if k == "file_refused"]
    assert len(refused) == 1 and refused[0]["path"].endswith("P-P-002.md")
    assert "symbolic link" in refused[0]["reason"], refused

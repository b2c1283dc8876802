"""The scheduling vocabulary (core/schedule.py): retry delays on a fake clock, jitter,
dependencies and cycles, and the keys refused with their line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modulatio_d.core import markdown, schedule
from modulatio_d.core.errors import BadFile
from modulatio_d.core.plan import parse_plan
from modulatio_d.core.schedule import RetryDelay, find_cycle, retry_at, waiting

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _plan(head: str):
    text = f"---\nid: X\nsub_objectives:\n{head}\n---\n"
    return parse_plan(markdown.load(Path("X.md"), text), "X")


def test_retry_delays_grow_by_backoff_up_to_max_delay():
    d = RetryDelay(10, backoff=2, max_delay=60)
    assert [d.wait(n, "p#0") for n in range(1, 6)] == [10, 20, 40, 60, 60]
    assert RetryDelay(5).wait(7, "p#0") == 5  # no backoff: the same each time
    assert RetryDelay(1, backoff=100).wait(10_000, "s") == pytest.approx(100 * 365 * 86400)


def test_jitter_is_bounded_and_the_same_for_the_same_attempt():
    d = RetryDelay(10, jitter=5)
    waits = [d.wait(1, f"plan-{i}#0") for i in range(200)]
    assert all(10 <= w < 15 for w in waits)
    assert len(set(waits)) > 150  # spread, not a constant
    assert d.wait(1, "plan-7#0") == waits[7]  # every daemon computes the same wait
    assert d.wait(2, "plan-7#0") != waits[7]


def test_retry_at_on_a_fake_clock_rounds_up_to_the_second():
    now = T0 + timedelta(microseconds=300)
    at = retry_at(now, RetryDelay(30, backoff=2), 2, "p#0")
    assert at == T0 + timedelta(seconds=61)
    assert retry_at(T0, RetryDelay(30), 1, "p#0") == T0 + timedelta(seconds=30)


def test_a_plan_released_for_a_retry_is_claimable_from_its_time():
    plan = _plan("  - run: 'true'\n    retry_delay: 1m\nnot_before: 2026-01-01T11:00:00Z\n"
                 "retry_wait: {index: 0, failures: 1, at: 2026-01-01T12:01:00Z}")
    assert plan.sub_objectives[0].retry_delay == RetryDelay(60)
    assert schedule.claimable_from(plan) == T0 + timedelta(minutes=1)
    assert schedule.claimable_from(_plan("  - run: 'true'")) is None


def test_dependencies_ready_blocked_missing_pending():
    w = waiting(("A", "B", "C", "D"), {"A": "completed", "B": "failed", "C": "executing"})
    assert (w.pending, w.blocked, w.missing) == (("C",), (("B", "failed"),), ("D",))
    assert not w.ready and w.reason() == "B failed, D missing, waiting for C"
    assert waiting(("A",), {"A": "completed"}).ready
    assert not waiting(("A",), {"A": "aborted"}).ready


def test_cycles_are_found_and_chains_are_not():
    assert find_cycle({"A": ("B",), "B": ("C",), "C": ()}) == []
    assert find_cycle({"A": ("B",), "B": ("C",), "C": ("A",)}) == ["A", "B", "C", "A"]
    assert find_cycle({"A": ("B",), "B": ("B2",), "B2": ("B",)}, "A") == []  # not through A
    assert find_cycle({"A": ("B",), "B": ("B2",), "B2": ("B",)}, "B") == ["B", "B2", "B"]
    diamond = {"D": ("B", "C"), "B": ("A",), "C": ("A",), "A": ()}
    assert find_cycle(diamond) == []


@pytest.mark.parametrize(("head", "message", "line"), [
    ("  - run: 'true'\nafter: X", "after names the plan itself", 5),
    ("  - run: 'true'\nafter: {a: 1}", "after must be a list", 5),
    ("  - run: 'true'\nafter:\n  - A\n  - 'no good'", "after item 2", 7),
    ("  - run: 'true'\nnot_before: soon", "not_before 'soon' is not a time", 5),
    ("  - run: 'true'\nnot_before: 2026-01-02\nexpires_at: 2026-01-01",
     "is not after not_before", 6),
    ("  - run: 'true'\nconcurrency_key: ''", "concurrency_key", 5),
    ("  - run: 'true'\n    backoff: 2", "backoff needs retry_delay", 4),
    ("  - run: 'true'\n    retry_delay: soon", "retry_delay", 4),
    ("  - run: 'true'\n    retry_delay: 10s\n    backoff: 0.5", "backoff 0.5", 4),
    ("  - run: 'true'\n    retry_delay: 10s\n    max_delay: 5s", "max_delay is shorter", 4),
    ("  - run: 'true'\nretry_wait: {at: never}", "retry_wait at 'never' is not a time", 5),
])
def test_bad_scheduling_keys_are_refused_with_their_line(head, message, line):
    with pytest.raises(BadFile) as e:
        _plan(head)
    assert message in str(e.value)
    assert e.value.line == line


def test_fraction_is_stable():
    assert schedule.fraction("x") == schedule.fraction("x")
    assert 0 <= schedule.fraction("y") < 1


# --- cron: intervals and jitter (core/intervals.py through core/cron.py) -------------

def test_interval_schedules_are_anchored_to_their_start():
    from modulatio_d.core import cron

    expr = cron.every_expr(90 * 60, datetime(2026, 1, 1, 6, 0, tzinfo=UTC))
    assert cron.parse_schedule(expr) == expr
    after = datetime(2026, 1, 1, 7, 0, tzinfo=UTC)
    assert [t.strftime("%H:%M") for t in cron.next_fires(expr, UTC, after, 3)] == \
        ["07:30", "09:00", "10:30"]
    before_start = datetime(2025, 12, 31, tzinfo=UTC)
    assert cron.next_fires(expr, UTC, before_start, 1)[0].strftime("%H:%M") == "06:00"
    d = cron.decide(expr, UTC, None, after, datetime(2026, 1, 1, 12, 0, tzinfo=UTC), "latest")
    assert [t.strftime("%H:%M") for t in d.fire] == ["12:00"]
    assert [t.strftime("%H:%M") for t in d.skipped] == ["07:30", "09:00", "10:30"]
    with pytest.raises(ValueError):
        cron.every_expr(30, after)  # under a minute


def test_jitter_delays_each_instant_the_same_way_for_everyone():
    from modulatio_d.core import cron

    t = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
    j = cron.jitter_of("E", t, 600)
    assert j == cron.jitter_of("E", t, 600) and timedelta(0) <= j < timedelta(seconds=600)
    assert j.microseconds == 0
    assert cron.jitter_of("E", t, 0) == timedelta(0)
    spread = {cron.jitter_of("E", t + timedelta(hours=h), 600) for h in range(50)}
    assert len(spread) > 20


def test_due_until_holds_back_an_instant_whose_jittered_moment_has_not_come():
    from modulatio_d.core import cron

    expr = "0 * * * *"
    t = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
    j = cron.jitter_of("E", t, 1800)
    start = t - timedelta(hours=3)
    before = t + j - timedelta(seconds=1)
    until = cron.due_until(expr, UTC, start, before, "E", 1800)
    assert until < t
    assert cron.decide(expr, UTC, None, start, until, "all").new_last_fired_for < t
    at = t + j
    assert cron.due_until(expr, UTC, start, at, "E", 1800) == at
    assert cron.decide(expr, UTC, None, start, at, "all").new_last_fired_for == t
    assert cron.due_until(expr, UTC, start, before, "E", 0) == before


@pytest.mark.parametrize(("keys", "message", "line"), [
    ('schedule: "0 * * * *"\nevery: 1h', "schedule and every are both given", 4),
    ("every: 30s\nstart: 2026-01-01T00:00:00Z", "at least 60 s", 3),
    ("every: soon", "every:", 3),
    ('schedule: "0 * * * *"\njitter: 2d', "jitter is more than a day", 4),
    ('schedule: "0 * * * *"\njitter: -1', "jitter:", 4),
])
def test_bad_interval_and_jitter_keys_refuse_the_entry_with_their_line(keys, message, line):
    from modulatio_d.store.cron_entries import parse_entry

    text = f"---\nobjective: O\n{keys}\n---\n"
    with pytest.raises(BadFile) as e:
        parse_entry(markdown.load(Path("E.md"), text), "P")
    assert message in str(e.value) and e.value.line == line


def test_an_interval_entry_without_start_counts_from_created_at():
    from modulatio_d.store.cron_entries import parse_entry

    text = "---\nobjective: O\nevery: 90m\ncreated_at: 2026-01-01T06:00:00Z\njitter: 5m\n---\n"
    entry = parse_entry(markdown.load(Path("E.md"), text), "P")
    assert entry.schedule == "every 90m" and entry.jitter == 300
    assert entry.expr.startswith("@every 5400 ")


def test_plan_new_writes_the_scheduling_keys(vault, run_cli):
    r = run_cli("plan", "new", "P", "Later", "--step", "true", "--approve", "--vault",
                vault.root, "--at", "2026-12-24T06:00:00Z", "--expires", "2026-12-25T00:00:00Z",
                "--after", "P-P-000")
    assert r.code == 0, r
    plan = parse_plan(markdown.load(Path("x.md"), vault.plan_path("P", "P-P-001").read_text()))
    s = plan.schedule
    assert s.not_before == datetime(2026, 12, 24, 6, tzinfo=UTC)
    assert s.expires_at == datetime(2026, 12, 25, tzinfo=UTC) and s.after == ("P-P-000",)
    bad = run_cli("plan", "new", "P", "Later", "--vault", vault.root, "--at", "soon")
    assert bad.code == 2 and "--at 'soon' is not a time" in bad.err


def test_a_concurrency_key_is_a_vault_wide_limit_of_one(vault):
    from modulatio_d.core.capacity import Capacity
    from modulatio_d.core.plan import PlanStatus
    from modulatio_d.daemon.admission import Admission
    from modulatio_d.daemon.scan import Candidate

    def cand(plan_id: str, project: str, key: str | None) -> Candidate:
        return Candidate((-50, 0.0, plan_id), vault.plan_path(project, plan_id), project,
                         PlanStatus.APPROVED, concurrency_key=key)

    told = []
    one = Admission(vault, lambda kind, **f: told.append((kind, f)), "h", 1)
    other = Admission(vault, lambda kind, **f: None, "h", 2)  # another daemon
    held = one.take(cand("A-1", "A", "db"), Capacity())
    assert held is not None and len(held.locks) == 1
    assert other.take(cand("B-1", "B", "db"), Capacity()) is None  # another project too
    assert other.waiting == {"B-1": "concurrency key db"}
    assert other.take(cand("B-2", "B", "web"), Capacity()) is not None
    assert other.take(cand("B-3", "B", None), Capacity()).locks == []  # no key: no slot
    held.release()
    assert other.take(cand("B-1", "B", "db"), Capacity()) is not None

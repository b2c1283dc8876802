"""The per-plan guard on a fake clock: an error nobody foresaw, injected into the runner or
the claim, costs that plan (counted, held off, paused with a critical ticket at the
CRASH_LIMIT-th crash on one version of the file), never the daemon; the count is on disk,
so daemons that come and go converge too; KeyboardInterrupt is not swallowed."""

from __future__ import annotations

import os

import pytest
from fakes import FakeClock, FakeWaker, write_plan

from modulatio_d.daemon import runner as runner_mod
from modulatio_d.daemon.guard import CRASH_LIMIT, Guard
from modulatio_d.daemon.loop import BACKOFF_TICKS, Daemon
from modulatio_d.store import tickets
from modulatio_d.store.events import read
from modulatio_d.store.lock import is_held, lock_path
from modulatio_d.store.plan_file import HeldPlan, read_plan

TICK = 1.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def daemon_on(vault, clock) -> Daemon:
    d = Daemon(vault, [], TICK, True, clock.wall, {}, monotonic=clock.monotonic)
    d.waker.close()
    d.waker = FakeWaker(clock)
    return d


@pytest.fixture
def daemon(vault, clock):
    return daemon_on(vault, clock)


class Poison(Exception):
    pass


@pytest.fixture
def poisoned_runner(monkeypatch):
    """Runner.run raises a Poison for every plan whose id ends in 'BAD'."""
    real = runner_mod.Runner.run
    ran = []

    def run(self):
        ran.append(self.plan.id)
        if self.plan.id.endswith("BAD"):
            raise Poison("a value nobody checks: 'x'")
        return real(self)
    monkeypatch.setattr(runner_mod.Runner, "run", run)
    return ran


def crashes(vault) -> list[dict]:
    return [e for e in read(vault.events_path) if e["event"] == "plan_crashed"]


def tick_past_hold_off(daemon, clock) -> bool:
    clock.advance(BACKOFF_TICKS * TICK + 0.5)
    return daemon._claim_and_run(daemon.scanner.scan(clock.wall()))


def test_a_crash_in_the_run_costs_that_plan_only(vault, daemon, clock, poisoned_runner):
    bad = write_plan(vault, ["{run: 'true'}"], plan_id="P-P-BAD")
    good = write_plan(vault, ["{run: 'true'}"], plan_id="P-P-002")
    os.utime(bad, (1e9, 1e9))  # approved earlier: tried first
    assert daemon._claim_and_run(daemon.scanner.scan(clock.wall())) is True  # crashed
    (crash,) = crashes(vault)
    assert crash["plan"] == "P-P-BAD" and crash["error_type"] == "Poison"
    assert crash["error"] == "Poison: a value nobody checks: 'x'"
    assert crash["count"] == 1 and crash["limit"] == CRASH_LIMIT and "test_guard.py" in \
        crash["where"]
    assert not is_held(lock_path(bad))
    assert [c.path for c in daemon.scanner.scan(clock.wall())] == [good]  # held off
    assert daemon._claim_and_run(daemon.scanner.scan(clock.wall())) is True
    assert read_plan(vault, good).plan.status.value == "completed"


def test_the_third_crash_on_one_version_pauses_it_with_a_critical_ticket(
        vault, daemon, clock, poisoned_runner):
    bad = write_plan(vault, ["{run: 'true'}"], plan_id="P-P-BAD")
    daemon._claim_and_run(daemon.scanner.scan(clock.wall()))
    for _ in range(CRASH_LIMIT - 1):
        assert tick_past_hold_off(daemon, clock)
    assert [c["count"] for c in crashes(vault)] == list(range(1, CRASH_LIMIT + 1))
    plan = read_plan(vault, bad).plan
    assert plan.status.value == "paused"
    assert plan.last_error == f"crashed the daemon {CRASH_LIMIT} times: Poison: a value " \
                              f"nobody checks: 'x'"
    (ticket_path,) = vault.tickets_dir("P").glob("P-P-BAD-T-*.md")
    ticket = tickets.read_ticket(vault, ticket_path)
    assert ticket.severity is tickets.Severity.CRITICAL and "Poison" in ticket.reason
    assert "Poison: a value nobody checks" in ticket_path.read_text()  # the body quotes it
    assert not Guard(vault, daemon.events, clock.wall).crash_path("P", "P-P-BAD").exists()
    assert not is_held(lock_path(bad))
    (paused,) = [e for e in read(vault.events_path) if e["event"] == "status_changed"
                 and e["status"] == "paused"]
    assert paused["by"] == "daemon" and paused["reason"] == plan.last_error
    assert tick_past_hold_off(daemon, clock) is False  # paused: nothing runs it any more
    assert len(poisoned_runner) == CRASH_LIMIT


def test_the_count_outlives_the_daemon(vault, clock, poisoned_runner):
    """Daemons that come and go (a crash loop under systemd) converge on the same count."""
    bad = write_plan(vault, ["{run: 'true'}"], plan_id="P-P-BAD")
    for _ in range(CRASH_LIMIT):
        fresh = daemon_on(vault, clock)  # nothing kept in memory
        assert fresh._claim_and_run(fresh.scanner.scan(clock.wall())) is True
    assert read_plan(vault, bad).plan.status.value == "paused"


def test_a_person_s_edit_starts_the_count_again(vault, daemon, clock, poisoned_runner):
    bad = write_plan(vault, ["{run: 'true'}"], plan_id="P-P-BAD")
    daemon._claim_and_run(daemon.scanner.scan(clock.wall()))
    tick_past_hold_off(daemon, clock)
    text = bad.read_text().replace("title: A plan", "title: A plan, fixed")
    bad.write_text(text)
    tick_past_hold_off(daemon, clock)
    assert [c["count"] for c in crashes(vault)] == [1, 2, 1]
    assert read_plan(vault, bad).plan.status.value == "executing"  # an orphan, for later


def test_a_run_without_a_crash_clears_the_count(vault, daemon, clock, monkeypatch):
    path = write_plan(vault, ["{run: 'true'}"], plan_id="P-P-002")
    guard = daemon.guard
    guard.crash_path("P", "P-P-002").parent.mkdir(parents=True)
    guard.crash_path("P", "P-P-002").write_text('{"version": "x", "count": 2}')
    assert daemon._claim_and_run(daemon.scanner.scan(clock.wall())) is True
    assert read_plan(vault, path).plan.status.value == "completed"
    assert not guard.crash_path("P", "P-P-002").exists()


def test_a_crash_in_the_claim_releases_the_lock_and_counts(vault, daemon, clock, monkeypatch):
    bad = write_plan(vault, ["{run: 'true'}"], plan_id="P-P-BAD")
    real = HeldPlan.update

    def update(self, changes):
        if "claim" in changes:
            raise TypeError("unforeseen in the claim")
        return real(self, changes)
    monkeypatch.setattr(HeldPlan, "update", update)
    assert daemon._claim_and_run(daemon.scanner.scan(clock.wall())) is True
    (crash,) = crashes(vault)
    assert crash["count"] == 1 and crash["error_type"] == "TypeError"
    assert not is_held(lock_path(bad))
    assert read_plan(vault, bad).plan.status.value == "approved"


def test_system_exit_is_counted_then_let_through(vault, daemon, clock, monkeypatch):
    write_plan(vault, ["{run: 'true'}"], plan_id="P-P-BAD")
    monkeypatch.setattr(runner_mod.Runner, "run", lambda self: exit(3))
    with pytest.raises(SystemExit):
        daemon._claim_and_run(daemon.scanner.scan(clock.wall()))
    assert [c["error_type"] for c in crashes(vault)] == ["SystemExit"]


def test_keyboard_interrupt_is_not_swallowed_nor_counted(vault, daemon, clock, monkeypatch):
    bad = write_plan(vault, ["{run: 'true'}"], plan_id="P-P-BAD")

    def interrupt(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(runner_mod.Runner, "run", interrupt)
    with pytest.raises(KeyboardInterrupt):
        daemon._claim_and_run(daemon.scanner.scan(clock.wall()))
    assert crashes(vault) == [] and not is_held(lock_path(bad))


def test_a_crash_while_pausing_leaves_the_count_for_the_next_one(vault, daemon, clock,
                                                                 poisoned_runner,
                                                                 monkeypatch):
    bad = write_plan(vault, ["{run: 'true'}"], plan_id="P-P-BAD")
    daemon._claim_and_run(daemon.scanner.scan(clock.wall()))
    tick_past_hold_off(daemon, clock)

    def broken(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tickets, "open_ticket", broken)
    assert tick_past_hold_off(daemon, clock)  # the third: the pause fails, the daemon lives
    assert read_plan(vault, bad).plan.status.value == "executing"
    monkeypatch.undo()
    poisoned_runner.clear()
    monkeypatch.setattr(runner_mod.Runner, "run", lambda self: (_ for _ in ()).throw(
        Poison("again")))
    assert tick_past_hold_off(daemon, clock)
    assert [c["count"] for c in crashes(vault)] == [1, 2, 3, 4]
    assert read_plan(vault, bad).plan.status.value == "paused"


@pytest.mark.parametrize("how", ["completed", "failed", "aborted by a person"])
def test_a_plan_that_ended_keeps_no_claim(vault, daemon, clock, how, monkeypatch):
    steps = {"completed": ["{run: 'true'}"], "failed": ["{run: 'false', on_failure: abort}"],
             "aborted by a person": ["{run: 'true'}", "{run: 'true'}"]}[how]
    path = write_plan(vault, steps)
    if how == "aborted by a person":
        real = runner_mod.Runner._record

        def record_then_abort(self, *a):
            real(self, *a)
            path.write_text(path.read_text().replace("status: executing", "status: aborted"))
        monkeypatch.setattr(runner_mod.Runner, "_record", record_then_abort)
    assert daemon._claim_and_run(daemon.scanner.scan(clock.wall())) is True
    plan = read_plan(vault, path).plan
    assert plan.status.value == how.split()[0]
    assert plan.claim is None and "claim:" not in path.read_text()
    assert plan.last_token == 1  # the log keeps the token its attempts ran with


# --- the same guard for cron entries, tickets and the config ------------------------------

def refusals(vault) -> list[dict]:
    return [e for e in read(vault.events_path) if e["event"] == "file_refused"]


def test_a_cron_entry_that_makes_firing_raise_is_refused_once_and_the_others_fire(
        vault, daemon, clock, monkeypatch):
    from modulatio_d.daemon.cron_firing import CronFirer

    folder = vault.cron_dir("P")
    folder.mkdir(parents=True)
    for name in ("P-C-001", "P-C-002"):
        (folder / f"{name}.md").write_text("---\nobjective: o\nschedule: '* * * * *'\n---\n")
    real, tried = CronFirer._zone, []

    def zone(self, project, entry):
        tried.append(entry.id)
        if entry.id == "P-C-001":
            raise ZeroDivisionError("a bug met by this entry")
        return real(self, project, entry)
    monkeypatch.setattr(CronFirer, "_zone", zone)
    daemon._fire_cron(clock.wall())
    daemon._fire_cron(clock.wall())
    assert tried == ["P-C-001", "P-C-002", "P-C-002"]  # refused until the file changes
    (refused,) = refusals(vault)
    assert refused["kind"] == "cron" and refused["path"] == "P/cron/P-C-001.md"
    assert refused["reason"].startswith("firing it raised ZeroDivisionError: a bug met")


def test_a_ticket_that_makes_applying_raise_is_refused_in_a_daemon(vault, daemon, clock,
                                                                    monkeypatch):
    from modulatio_d.daemon import tickets as daemon_tickets

    tickets.open_ticket(vault, "P", "P-P-001", tickets.Severity.WARNING, "r", "d",
                        {"current_index": 0, "rev": 1}, clock.wall())
    path = next(vault.tickets_dir("P").glob("*.md"))
    path.write_text(path.read_text().replace("decision: pending", "decision: approve"))

    def broken(*a):
        raise ZeroDivisionError("a bug met by this ticket")
    monkeypatch.setattr(daemon_tickets, "_apply", broken)
    daemon._apply_tickets(clock.wall())  # no raise: the daemon goes on
    daemon._apply_tickets(clock.wall())
    (refused,) = refusals(vault)
    assert refused["kind"] == "ticket" and "ZeroDivisionError" in refused["reason"]
    with pytest.raises(ZeroDivisionError):  # a command (no memory) says so itself
        daemon_tickets.apply_decisions(vault, "P", daemon.events, clock.wall())


def test_a_config_whose_reading_raises_is_refused_and_the_last_one_kept(vault, daemon,
                                                                         monkeypatch):
    from modulatio_d.store import config

    daemon._load_config()
    before = daemon.config
    vault.config_path.write_text("agents: {}\n")  # changed: read again

    def broken(path):
        raise ZeroDivisionError("a bug met by this config")
    monkeypatch.setattr(config, "load", broken)
    daemon._load_config()
    assert daemon.config is before
    (refused,) = refusals(vault)
    assert refused["kind"] == "config" and "ZeroDivisionError" in refused["reason"]


def test_a_clean_run_never_removes_through_a_linked_crashes_folder(vault, tmp_path, clock):
    """The crash count is removed after each clean run (once a plan): by name in its folder,
    beneath the vault's root (store/fs/), so a `crashes` folder made a link to another
    folder removes nothing there."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "P-P-001.json").write_text("{}")
    guard = Guard(vault, lambda *a, **k: None, clock.wall)
    folder = guard.crash_path("P", "P-P-001").parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(outside)
    guard.ran("P", "P-P-001")
    assert (outside / "P-P-001.json").exists()
    folder.unlink()
    folder.mkdir()
    guard.crash_path("P", "P-P-001").write_text("{}")
    guard.ran("P", "P-P-001")
    assert not guard.crash_path("P", "P-P-001").exists()

"""Watch triggers on a fake clock (TriggerFirer with `now` and a monotonic clock passed in),
webhook deliveries, and the entry's checks. In-process: no daemon, no sleeps."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from fakes import WALL0, FakeClock

from modulatio_d.core import markdown
from modulatio_d.core.errors import BadFile, UsageError
from modulatio_d.daemon.trigger_firing import TriggerFirer
from modulatio_d.ops import triggers as ops
from modulatio_d.store import events
from modulatio_d.store import triggers as store
from modulatio_d.store.events import EventLog
from modulatio_d.store.plan_file import read_plan


def write_trigger(vault, keys: str, trigger_id="P-T-001") -> Path:
    folder = vault.project_dir("P") / "triggers"
    folder.mkdir(parents=True, exist_ok=True)
    (vault.project_dir("P") / "plans").mkdir(exist_ok=True)
    path = folder / f"{trigger_id}.md"
    path.write_text(f"---\nobjective: React\n{keys}---\nBody.\n")
    past = WALL0.timestamp() - 3600  # settled: never "maybe half-written"
    os.utime(path, (past, past))
    return path


class Rig:
    def __init__(self, vault, tmp_path: Path):
        self.vault = vault
        self.clock = FakeClock()
        self.log = EventLog(vault.events_path)
        self.firer = TriggerFirer(vault, self.log, self.clock.monotonic)
        self.drop = tmp_path / "drop"
        self.drop.mkdir()

    def look(self, after: float = 0.0) -> list[str]:
        self.clock.advance(after)
        return self.firer.fire_due("P", self.clock.wall())

    def touch(self, *names: str) -> None:
        for name in names:
            path = self.drop / name
            path.write_text(path.read_text() + "x" if path.exists() else "x")

    def kickoffs(self) -> list[str]:
        return sorted(p.stem for p in self.vault.plans_dir("P").glob("P-T-001-*.md"))


@pytest.fixture
def rig(vault, tmp_path):
    return Rig(vault, tmp_path)


def test_a_batch_fires_once_quiet_for_its_debounce(rig):
    write_trigger(rig.vault, f"watch: [{rig.drop}]\ndebounce: 2s\npoll: 100ms\n")
    rig.touch("before")
    assert rig.look() == []  # the baseline: what exists is no change
    rig.touch("a", "b")
    assert rig.look(1) == []  # a change: the batch starts
    rig.touch("c")
    assert rig.look(1.5) == []  # grew again: the debounce starts over
    assert rig.look(1.5) == []  # quiet for 1.5 s only
    assert rig.look(0.6) == ["P-T-001-000001"]
    plan = read_plan(rig.vault, rig.vault.plan_path("P", "P-T-001-000001")).plan
    assert plan.data["trigger"] == "P-T-001" and plan.data["changed_paths"] == 3
    env = plan.sub_objectives[0].env
    assert env["MODULATIO_TRIGGER_PATHS"].splitlines() == [str(rig.drop / n) for n in "abc"]
    assert plan.status.value == "approved"
    assert rig.look(5) == []  # nothing new
    rig.touch("a")
    rig.look(0.2)
    assert rig.look(3) == ["P-T-001-000002"]


def test_polling_waits_for_its_poll_interval(rig):
    write_trigger(rig.vault, f"watch: [{rig.drop}]\ndebounce: 100ms\npoll: 5s\n")
    rig.look()
    rig.touch("a")
    assert rig.look(1) == []  # not looked at: the poll interval has not passed
    assert rig.firer.next_look == pytest.approx(rig.clock.mono + 4)
    assert rig.look(4) == []  # looked: the change is seen, the batch starts
    assert rig.look(5) == ["P-T-001-000001"]


@pytest.mark.parametrize(("policy", "kept"), [("drop-oldest", ["c", "d", "e"]),
                                              ("drop-newest", ["a", "b", "c"])])
def test_overflow_drops_by_policy_and_tells_once_per_batch(rig, policy, kept):
    write_trigger(rig.vault, f"watch: [{rig.drop}]\ndebounce: 1s\npoll: 100ms\n"
                  f"capacity: 3\noverflow: {policy}\n")
    rig.look()
    rig.touch("a", "b", "c")
    rig.look(0.2)
    rig.touch("d", "e")
    rig.look(0.2)
    [kick] = rig.look(2)
    plan = read_plan(rig.vault, rig.vault.plan_path("P", kick)).plan
    assert plan.sub_objectives[0].env["MODULATIO_TRIGGER_PATHS"].splitlines() == \
        [str(rig.drop / n) for n in kept]
    assert plan.data["dropped_paths"] == 2
    log = events.read(rig.vault.events_path)
    assert [e["policy"] for e in log if e["event"] == "trigger_overflow"] == [policy]
    assert (rig.vault.tickets_dir("P") / "P-T-001-T-01.md").exists()


def test_a_kickoff_made_before_a_crash_is_not_made_again(rig):
    path = write_trigger(rig.vault, f"watch: [{rig.drop}]\ndebounce: 1s\npoll: 100ms\n")
    rig.look()
    rig.touch("a")
    rig.look(0.2)
    state_before = store.state_path(store.read_trigger(rig.vault, path)).read_bytes()
    assert rig.look(2) == ["P-T-001-000001"]
    # the state write was lost: the daemon died after the kickoff was made
    store.state_path(store.read_trigger(rig.vault, path)).write_bytes(state_before)
    other = TriggerFirer(rig.vault, rig.log, rig.clock.monotonic)
    rig.touch("b")
    assert other.fire_due("P", rig.clock.wall()) == []  # batch 1 done; b starts batch 2
    state = json.loads(store.state_path(store.read_trigger(rig.vault, path)).read_text())
    assert state["seq"] == 2 and state["pending"] == [str(rig.drop / "b")]
    rig.clock.advance(2)
    assert other.fire_due("P", rig.clock.wall()) == ["P-T-001-000002"]
    assert rig.kickoffs() == ["P-T-001-000001", "P-T-001-000002"]


def test_a_disabled_watch_passes_changes_over(rig):
    write_trigger(rig.vault, f"watch: [{rig.drop}]\ndebounce: 1s\npoll: 100ms\n"
                  "enabled: false\n")
    rig.look()
    rig.touch("a")
    rig.look(0.2)
    assert rig.look(2) == [] and rig.kickoffs() == []


def test_the_vaults_own_files_are_never_changes(rig):
    write_trigger(rig.vault, "watch: ['**']\ndebounce: 1s\npoll: 100ms\n")
    rig.look()
    (rig.vault.plans_dir("P") / "P-P-001.md").write_text("a plan being written")
    rig.look(0.2)
    assert rig.look(2) == []


def test_one_webhook_delivery_makes_one_kickoff(vault):
    write_trigger(vault, "webhook: true\n", "P-T-002")
    log = EventLog(vault.events_path)
    first = ops.fire_webhook(vault, "P-T-002", b'{"a": 1}', "d-1", WALL0, log)
    again = ops.fire_webhook(vault, "P-T-002", b'{"a": 2}', "d-1", WALL0, log)
    other = ops.fire_webhook(vault, "P-T-002", b'{"a": 1}', "d-2", WALL0, log)
    assert first[1] and not again[1] and other[1] and first[0] == again[0] != other[0]
    plan = read_plan(vault, vault.plan_path("P", first[0])).plan
    assert plan.sub_objectives[0].env["MODULATIO_TRIGGER_PAYLOAD"] == '{"a": 1}'
    assert plan.data["delivery_id"] == "d-1"
    no_id = ops.fire_webhook(vault, "P-T-002", b"same", None, WALL0, log)
    assert ops.fire_webhook(vault, "P-T-002", b"same", None, WALL0, log) == (no_id[0], False)
    with pytest.raises(BadFile, match="not UTF-8"):
        ops.fire_webhook(vault, "P-T-002", b"\xff", "d-3", WALL0, log)
    with pytest.raises(BadFile, match="more than"):
        ops.fire_webhook(vault, "P-T-002", b"x" * (store.MAX_PAYLOAD + 1), "d-4", WALL0, log)


def test_add_checks_options_as_the_daemons_will(vault):
    (vault.project_dir("P") / "plans").mkdir(parents=True)
    t = ops.add(vault, "P", "Import", WALL0, ["inbox/*.csv"], False, debounce="500ms",
                capacity=10)
    assert t.id == "P-T-001" and t.debounce == 0.5 and t.capacity == 10
    assert ops.add(vault, "P", "Hook", WALL0, [], True).id == "P-T-002"
    with pytest.raises(UsageError, match="capacity"):
        ops.add(vault, "P", "Import", WALL0, ["inbox"], False, capacity=0)
    with pytest.raises(UsageError, match="--watch"):
        ops.add(vault, "P", "Import", WALL0, [], False)
    with pytest.raises(UsageError, match="watch trigger"):
        ops.fire_webhook(vault, "P-T-001", b"x", None, WALL0, EventLog(vault.events_path))
    assert ops.set_enabled(vault, "P-T-002", False)[1]
    with pytest.raises(UsageError, match="disabled"):
        ops.fire_webhook(vault, "P-T-002", b"x", None, WALL0, EventLog(vault.events_path))
    ops.remove(vault, "P-T-001")
    assert [r["id"] for r in ops.rows(vault)] == ["P-T-002"]


@pytest.mark.parametrize(("keys", "message", "line"), [
    ("watch: [a]\nwebhook: true\n", "both given", 4),
    ("watch: []\n", "watch must be", 3),
    ("watch: [a, 3]\n", "watch item 2", 3),
    ("webhook: true\ndebounce: 1s\n", "debounce belongs to a watch", 4),
    ("watch: [a]\ncapacity: 0\n", "capacity 0", 4),
    ("watch: [a]\noverflow: drop-all\n", "overflow 'drop-all'", 4),
    ("watch: [a]\npoll: never\n", "poll:", 4),
    ("watch: [a]\nwach: b\n", "did you mean watch", 4),
    ("webhook: yes\n", "webhook 'yes' must be true or false", 3),
])
def test_bad_entries_are_refused_whole_with_their_line(keys, message, line):
    text = f"---\nobjective: O\n{keys}---\n"
    with pytest.raises(BadFile) as e:
        store.parse_trigger(markdown.load(Path("P-T-009.md"), text), "P")
    assert message in str(e.value) and e.value.line == line


def test_debounce_takes_milliseconds():
    text = "---\nobjective: O\nwatch: [a]\ndebounce: 250ms\n---\n"
    t = store.parse_trigger(markdown.load(Path("X.md"), text), "P")
    assert t.debounce == 0.25 and t.poll == store.DEFAULT_POLL_S
    assert timedelta(seconds=t.debounce) < timedelta(seconds=1)

"""HeldPlan writes, the rev record, and the repair of stale editor saves.

A person's editor that saves an hour-old buffer puts back an old rev,
current_index, status and reflection_log. The daemon's keys must come back
from its record; what the person changed in that buffer (title, a pause) stays.
"""

from __future__ import annotations

import difflib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modulatio_d.core import times
from modulatio_d.core.errors import BadFile
from modulatio_d.core.plan import PlanStatus
from modulatio_d.store import owned_keys, plan_file, record_lines
from modulatio_d.store.plan_file import HeldPlan, read_plan, write_as_person

NOW = datetime(2025, 11, 4, 10, 0, tzinfo=UTC)

PLAN = """\
---
# Weekly digest, owned by the research team
id: P-P-001
title: 'Weekly digest'   # shown in plan list
status: approved         # set by a person
priority: 50
sub_objectives:
  - Collect sources      # text only
  - {run: make digest, timeout: 10m}
  - title: Publish
    call: digest.publish:main
x_owner: "ana"   # a key the daemon does not know
---

Notes for people.   
"""

LOG0 = {"index": 0, "title": "Collect sources", "attempt": 1, "outcome": "ok",
        "decision": "continue"}
LOG1 = {"index": 1, "title": "make digest", "attempt": 1, "outcome": "ok", "decision": "continue"}
LOG2 = {"index": 2, "title": "Publish", "attempt": 1, "outcome": "ok", "decision": "continue"}


@pytest.fixture
def path(vault) -> Path:
    p = vault.plans_dir("P") / "P-P-001.md"
    p.parent.mkdir(parents=True)
    p.write_text(PLAN)
    return p


def run_two_steps(vault, path) -> tuple[HeldPlan, dict[int, str]]:
    """A holder that claimed the plan and finished two steps; the file at each rev."""
    held = HeldPlan(vault, path)
    copies = {0: path.read_text()}
    held.update({"status": "executing", "execution_started_at": NOW,
                 "claim": {"host": "h", "pid": 1, "token": 1, "claimed_at": NOW}})
    copies[1] = path.read_text()
    held.update({"current_index": 1, "reflection_log": [LOG0]})
    copies[2] = path.read_text()
    held.update({"current_index": 2, "reflection_log": [LOG0, LOG1]})
    copies[3] = path.read_text()
    assert held.plan.rev == 3 and held.record.rev == 3
    return held, copies


def normal(value):
    """Values as JSON would hold them: times as the daemon writes them."""
    return json.loads(json.dumps(value, default=times.format_time))


def editor_writes(path: Path, text: str) -> None:
    """An editor saving its buffer: a new file renamed over the plan."""
    tmp = path.with_name(".P-P-001.md.swp")
    tmp.write_text(text)
    tmp.replace(path)


def test_read_plan(vault, path):
    read = read_plan(vault, path)
    assert read.plan.id == "P-P-001" and read.plan.status is PlanStatus.APPROVED
    assert read.snapshot.raw == PLAN.encode()


def test_updates_touch_only_daemon_lines(vault, path, monkeypatch):
    monkeypatch.setattr(owned_keys, "INLINE", 0)  # the log in its own file (no short log)
    held, copies = run_two_steps(vault, path)
    diff = [line for line in difflib.unified_diff(PLAN.splitlines(), copies[3].splitlines(),
                                                  lineterm="", n=0)
            if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert diff == [
        "-status: approved         # set by a person",
        "+status: executing         # set by a person",
        # the daemon's keys at the end, in plan.DAEMON_KEYS order whenever they came
        '+progress: "2/3 done · executing"',
        '+last_result: "step 2 “make digest” attempt 1: ok"',
        "+current_index: 2",
        "+execution_started_at: 2025-11-04T10:00:00Z",
        '+claim: {host: h, pid: 1, token: 1, claimed_at: "2025-11-04T10:00:00Z"}',
        "+reflection_log:",
        "+  - {index: 0, title: Collect sources, attempt: 1, outcome: ok, decision: continue}",
        "+  - {index: 1, title: make digest, attempt: 1, outcome: ok, decision: continue}",
        "+rev: 3",
    ]
    assert copies[3].endswith("---\n\nNotes for people.   \n")
    rec = record_lines.parse(held.record_path.read_bytes())[0]
    assert held.record_path == vault.root / ".modulatio" / "state" / "P" / "P-P-001.json"
    assert rec["rev"] == 3 and rec["status"] == "executing"
    assert rec["keys"]["current_index"] == 2 and "reflection_log" not in rec["keys"]
    # The log is in its own file, a line an entry, counted by the record.
    log_file = owned_keys.log_path(held.record_path)
    assert [json.loads(line) for line in log_file.read_text().splitlines()] == [LOG0, LOG1]
    assert rec["log"] == {"entries": 2, "bytes": log_file.stat().st_size}
    assert owned_keys.load(held.record_path).keys["reflection_log"] == [LOG0, LOG1]
    assert rec["keys"]["execution_started_at"] == "2025-11-04T10:00:00Z"


def test_a_short_log_stays_in_the_record_and_a_long_one_moves_to_its_file(vault, path,
                                                                          monkeypatch):
    """A plan of a few steps creates no log file (owned_keys.INLINE): its record holds the
    short log; past INLINE entries the file is written once, then appended to, and a
    record that has a file keeps it even when a person's save shortens the log."""
    monkeypatch.setattr(owned_keys, "INLINE", 2)
    held, _ = run_two_steps(vault, path)  # the claim, then two entries: INLINE
    log_file = owned_keys.log_path(held.record_path)
    assert not log_file.exists()
    rec = record_lines.parse(held.record_path.read_bytes())[0]
    assert "log" not in rec and normal(rec["keys"]["reflection_log"]) == [LOG0, LOG1]
    assert owned_keys.load(held.record_path).keys["reflection_log"] == [LOG0, LOG1]
    held.update({"reflection_log": [LOG0, LOG1, LOG1]})  # past INLINE: to its file
    assert len(log_file.read_text().splitlines()) == 3
    inode = log_file.stat().st_ino
    rec = record_lines.parse(held.record_path.read_bytes())[0]
    assert "reflection_log" not in rec["keys"] and rec["log"]["entries"] == 3
    held.update({"reflection_log": [LOG0]})  # shorter (a person's save): still its file
    assert log_file.stat().st_ino != inode and log_file.read_text().count("\n") == 1
    assert owned_keys.load(held.record_path).keys["reflection_log"] == [LOG0]
    held.update({"reflection_log": []})  # empty: in the JSON, no file write
    assert owned_keys.load(held.record_path).keys["reflection_log"] == []
    assert log_file.read_text().count("\n") == 1


def test_an_unchanged_file_is_not_parsed_again(vault, path, monkeypatch):
    held = HeldPlan(vault, path)

    def no_parse(*a, **k):
        raise AssertionError("parsed a file that did not change")

    monkeypatch.setattr(plan_file, "parse_plan", no_parse)
    plan = held.update({"status": "executing"})
    plan = held.update({"current_index": 1, "reflection_log": [LOG0]})
    assert (plan.status, plan.current_index, plan.rev) == (PlanStatus.EXECUTING, 1, 2)
    assert held.refresh() is False


@pytest.mark.parametrize("reopen", [True, False], ids=["reopened", "refreshed"])
@pytest.mark.parametrize("old_rev", [0, 1, 2])
def test_stale_save_with_a_new_title_gets_daemon_keys_back(vault, path, reopen, old_rev):
    held, copies = run_two_steps(vault, path)
    events = []
    stale = copies[old_rev].replace("'Weekly digest'", "'Weekly digest, v2'")
    editor_writes(path, stale)

    if reopen:  # a daemon restarted, or the next claimer
        held = HeldPlan(vault, path, notify=lambda *a, **k: events.append((a, k)))
    else:
        held.notify = lambda *a, **k: events.append((a, k))
        assert held.refresh() is True

    p = held.plan
    assert p.title == "Weekly digest, v2"
    assert (p.status, p.current_index, p.reflection_log) == (PlanStatus.EXECUTING, 2, [LOG0, LOG1])
    assert p.claim["token"] == 1 and p.execution_started_at == NOW
    assert p.rev == 4 and held.record.rev == 4
    assert events == [(("stale_save_repaired",),
                       {"plan": "P-P-001", "file_rev": old_rev, "record_rev": 3})]
    # On disk: the newest daemon keys, the person's title, the rest as it was.
    on_disk = read_plan(vault, path).plan
    assert (on_disk.title, on_disk.status, on_disk.current_index, on_disk.rev) == (
        "Weekly digest, v2", PlanStatus.EXECUTING, 2, 4)
    assert normal(on_disk.own_keys()) == normal({**held.plan.own_keys(), "rev": 4})
    if old_rev == 2:  # every key was there already: only the title and rev lines differ
        assert path.read_text() == copies[3].replace("'Weekly digest'", "'Weekly digest, v2'") \
            .replace("rev: 3", "rev: 4")


@pytest.mark.parametrize("status", ["paused", "aborted"])
def test_stale_save_with_a_pause_keeps_the_pause(vault, path, status):
    held, copies = run_two_steps(vault, path)
    editor_writes(path, copies[1].replace("status: executing ", f"status: {status} "))
    assert held.refresh() is True
    p = held.plan
    assert (p.status.value, p.current_index, p.reflection_log, p.rev) == (
        status, 2, [LOG0, LOG1], 4)
    assert f"status: {status} " in path.read_text()


@pytest.mark.parametrize("how", ["editor", "command"])
@pytest.mark.parametrize("status", ["paused", "aborted"])
def test_a_person_stop_wins_over_the_holders_next_write(vault, path, status, how):
    held, _ = run_two_steps(vault, path)
    if how == "editor":
        editor_writes(path, path.read_text().replace("status: executing ", f"status: {status} "))
    else:
        write_as_person(vault, path, {"status": status})
    # The holder has not looked yet: its next write keeps the person's status.
    p = held.update({"status": "completed", "current_index": 3,
                     "reflection_log": [LOG0, LOG1, LOG2]})
    assert (p.status.value, p.current_index, p.rev) == (status, 3, 4)
    assert read_plan(vault, path).plan.status.value == status


def test_a_daemon_status_in_a_stale_buffer_comes_back_from_the_record(vault, path):
    held, copies = run_two_steps(vault, path)
    held.update({"status": "paused", "last_error": "step 3 failed"})  # the daemon paused it
    editor_writes(path, copies[2])  # an old buffer: executing, current_index 1
    held = HeldPlan(vault, path)
    p = held.plan
    assert (p.status, p.current_index, p.last_error, p.rev) == (
        PlanStatus.PAUSED, 2, "step 3 failed", 5)


def test_stale_save_found_while_writing(vault, path):
    held, copies = run_two_steps(vault, path)
    editor_writes(path, copies[1].replace("'Weekly digest'", "'Renamed'"))
    # No refresh: the holder writes its next step and meets the stale file.
    p = held.update({"current_index": 3, "reflection_log": [LOG0, LOG1, LOG2],
                     "status": "completed", "claim": None})
    assert (p.title, p.status, p.current_index, p.rev) == ("Renamed", PlanStatus.COMPLETED, 3, 4)
    on_disk = read_plan(vault, path).plan
    assert (on_disk.title, on_disk.status, on_disk.current_index, on_disk.reflection_log,
            on_disk.claim) == ("Renamed", PlanStatus.COMPLETED, 3, [LOG0, LOG1, LOG2], None)
    assert "claim:" not in path.read_text()


def test_a_fresh_edit_at_the_record_rev_is_honoured(vault, path):
    held, _copies = run_two_steps(vault, path)
    held.update({"status": "paused"})  # rev 4
    rewound = path.read_text().replace("current_index: 2", "current_index: 0")
    editor_writes(path, rewound)
    held = HeldPlan(vault, path)
    assert (held.plan.current_index, held.plan.rev) == (0, 4)
    assert path.read_text() == rewound  # nothing to repair: no write at all
    p = held.update({"status": "approved"})
    assert (p.current_index, p.rev) == (0, 5)
    assert read_plan(vault, path).plan.current_index == 0


def test_a_fresh_edit_between_writes_is_kept(vault, path):
    held, _ = run_two_steps(vault, path)
    editor_writes(path, path.read_text().replace("priority: 50", "priority: 90  # urgent"))
    held.update({"current_index": 3})
    text = path.read_text()
    assert "priority: 90  # urgent\n" in text and "current_index: 3\n" in text
    assert "rev: 4\n" in text


@pytest.mark.parametrize("damage", ["deleted", "garbled"])
def test_without_a_record_the_file_is_trusted(vault, path, damage):
    held, copies = run_two_steps(vault, path)
    if damage == "deleted":
        held.record_path.unlink()
    else:
        held.record_path.write_text("{not json")
    editor_writes(path, copies[1])
    held = HeldPlan(vault, path)
    assert (held.plan.current_index, held.plan.rev, held.plan.status) == (
        0, 1, PlanStatus.EXECUTING)
    assert path.read_text() == copies[1]
    held.update({"current_index": 1})
    assert read_plan(vault, path).plan.rev == 2
    assert owned_keys.load(held.record_path).rev == 2


def test_an_old_buffer_from_before_the_first_write_keeps_the_daemon_status(vault, path):
    held, copies = run_two_steps(vault, path)
    editor_writes(path, copies[0])  # approved, no rev: the person changed nothing
    held = HeldPlan(vault, path)
    assert (held.plan.status, held.plan.current_index) == (PlanStatus.EXECUTING, 2)


def test_write_as_person_is_honoured_by_the_holder(vault, path):
    held, _ = run_two_steps(vault, path)
    before = held.record_path.read_bytes()
    _, plan = write_as_person(vault, path, {"status": "paused"})
    assert plan.status is PlanStatus.PAUSED and plan.rev == 3
    assert read_plan(vault, path).plan.rev == 3  # no rev stamp: written as an editor would
    assert held.record_path.read_bytes() == before
    assert held.refresh() is True
    assert (held.plan.status, held.plan.rev, held.plan.current_index) == (PlanStatus.PAUSED, 3, 2)
    held.update({"last_error": None})  # the holder's next write stamps rev 4 over the pause
    assert read_plan(vault, path).plan.status is PlanStatus.PAUSED
    assert held.record.status == "paused" and held.record.rev == 4


def test_a_vanished_file_is_not_a_change(vault, path):
    held = HeldPlan(vault, path)
    path.rename(path.with_suffix(".bak"))  # vim's backup rename, before its new file exists
    assert held.refresh() is False


@pytest.mark.parametrize("written", [
    "reflection_log:\n  - {index: 0}\n",
    "reflection_log:   # the daemon's\n- index: 0\n  title: x\n",
    "reflection_log: [{index: 0}]\n",  # a flow list: rendered whole, nothing lost
    "reflection_log: [\n  {index: 0}]\n",
    "reflection_log:\n    # first step went fine\n  - {index: 0}\n",
])
def test_the_log_grows_whatever_form_the_file_gave_it(vault, path, written):
    text = PLAN.replace("x_owner:", f"current_index: 1\n{written}x_owner:")
    path.write_text(text)
    held = HeldPlan(vault, path)
    first = held.plan.reflection_log[0]
    held.update({"current_index": 2, "reflection_log": [first, LOG1]})
    held.update({"current_index": 3, "reflection_log": [first, LOG1, LOG2]})
    on_disk = read_plan(vault, path).plan
    assert on_disk.reflection_log == [first, LOG1, LOG2]
    assert normal(on_disk.own_keys()) == normal(held.plan.own_keys())
    before_log, after_log = text.split("current_index: 1\n"), path.read_text()
    assert after_log.startswith(before_log[0])  # every line above the daemon keys untouched


def test_a_broken_save_is_never_written_into(vault, path):
    held, _ = run_two_steps(vault, path)
    broken = path.read_text().replace("title: 'Weekly digest'", "title: [oops")
    editor_writes(path, broken)
    with pytest.raises(BadFile, match=r":5: invalid YAML"):
        held.refresh()
    with pytest.raises(BadFile):
        held.update({"current_index": 3})
    assert path.read_text() == broken
    fixed = broken.replace("title: [oops", "title: Fixed")
    editor_writes(path, fixed)
    assert held.refresh() is True and held.plan.title == "Fixed"
    held.update({"current_index": 3})
    assert read_plan(vault, path).plan.current_index == 3


def test_write_as_person_judges_the_change_on_the_file_as_it_is_when_written(vault, path):
    """The daemon finished the plan between the command's look and its write: a pause
    computed from the earlier look must not land on a completed plan."""
    from modulatio_d.core.errors import TransitionRefused
    from modulatio_d.store.plan_file import _changes

    seen = []

    def pause(plan):
        seen.append(plan.status)
        if len(seen) == 1:  # the daemon's write lands now, before ours is swapped in
            editor_writes(path, path.read_text().replace("status: approved",
                                                         "status: completed"))
        return _changes(plan, "pause", NOW)

    with pytest.raises(TransitionRefused, match="is completed: pause works only from"):
        write_as_person(vault, path, pause)
    assert seen == [PlanStatus.APPROVED, PlanStatus.COMPLETED]
    assert read_plan(vault, path).plan.status is PlanStatus.COMPLETED


@pytest.mark.parametrize("bad_keys", [
    {"reflection_log": [1, 2]}, {"claim": {"token": "x"}}, {"in_flight": {"attempt": "../x"}},
    {"execution_started_at": "0001-01-01T00:00:00+01:00"}, {"current_index": -1}])
def test_a_record_a_plan_could_not_hold_is_not_trusted(vault, path, bad_keys):
    """A repair copies the record's keys into the plan: ones the plan's reader refuses
    (a record edited by hand) would make the daemon's own write unreadable."""
    held, copies = run_two_steps(vault, path)
    data = record_lines.parse(held.record_path.read_bytes())[0]
    if "reflection_log" in bad_keys:  # in its own file, a line an entry
        lines = "".join(json.dumps(e) + "\n" for e in bad_keys["reflection_log"])
        owned_keys.log_path(held.record_path).write_text(lines)
        data["log"] = {"entries": len(bad_keys["reflection_log"]), "bytes": len(lines)}
    else:
        data["keys"].update(bad_keys)
    held.record_path.write_text(json.dumps(data))
    assert owned_keys.load(held.record_path) is None
    editor_writes(path, copies[1])  # a stale save: with a record, it would be repaired
    held = HeldPlan(vault, path)
    assert held.plan.rev == 1 and path.read_text() == copies[1]  # trusted as it stands


def test_the_records_log_grows_by_appends_and_a_lost_tail_is_not_trusted(vault, path,
                                                                          monkeypatch):
    monkeypatch.setattr(owned_keys, "INLINE", 0)  # the log in its file from the first entry
    held, _ = run_two_steps(vault, path)
    log_file = owned_keys.log_path(held.record_path)
    inode = log_file.stat().st_ino
    held.update({"reflection_log": [*held.plan.reflection_log, LOG1]})
    assert log_file.stat().st_ino == inode  # the new entry's line appended, the rest kept
    assert owned_keys.load(held.record_path).keys["reflection_log"] == [LOG0, LOG1, LOG1]
    held.update({"reflection_log": [LOG0, LOG1]})
    rec = record_lines.parse(held.record_path.read_bytes())[0]
    # A write whose JSON never landed left lines past the count: ignored.
    with log_file.open("a") as f:
        f.write('{"index": 9}\n')
    assert owned_keys.load(held.record_path).keys["reflection_log"] == [LOG0, LOG1]
    # Lines counted but lost (a power loss): the record is not trusted.
    log_file.write_bytes(log_file.read_bytes()[: rec["log"]["bytes"] - 5])
    assert owned_keys.load(held.record_path) is None


def test_the_record_grows_by_a_line_a_write_and_a_torn_line_leaves_the_one_before(vault, path):
    """No temp file and rename per write (a file creation each step): a line appended,
    the file written anew every COMPACT_LINES lines. A torn last line (a power loss)
    leaves the record before it: older than the file, so the file is trusted."""
    held, copies = run_two_steps(vault, path)
    inode = held.record_path.stat().st_ino
    held.update({"current_index": 2})
    assert held.record_path.stat().st_ino == inode  # appended in place
    raw = held.record_path.read_bytes()
    assert raw.count(b"\n") == 4 and raw.endswith(b"\n")  # claim, two steps, this write
    assert owned_keys.load(held.record_path).rev == held.plan.rev == 4
    held.record_path.write_bytes(raw + b'{"rev": 99, "sta')  # torn: ignored
    assert owned_keys.load(held.record_path).rev == 4
    held.record_path.write_bytes(raw[:-30])  # the last line torn: the one before it
    assert owned_keys.load(held.record_path).rev == 3
    editor_writes(path, copies[1])  # stale against rev 3: still repaired
    held = HeldPlan(vault, path)
    assert held.plan.current_index == 2
    held.update({"last_error": None})  # appended after the last good line, the tail cut
    raw = held.record_path.read_bytes()
    assert [json.loads(line)["rev"] for line in raw.splitlines()] == [1, 2, 3, 4, 5]
    for _ in range(record_lines.COMPACT_LINES):
        held.update({"last_error": None})
    assert held.record_path.read_bytes().count(b"\n") < record_lines.COMPACT_LINES
    assert owned_keys.load(held.record_path).rev == held.plan.rev


def test_a_record_of_the_one_object_form_is_read_and_then_appended_to(vault, path):
    held, _ = run_two_steps(vault, path)
    data = record_lines.parse(held.record_path.read_bytes())[0]
    held.record_path.write_text(json.dumps(data))  # as versions before record_lines wrote it
    held = HeldPlan(vault, path)
    assert held.record.rev == data["rev"]
    held.update({"last_error": None})
    assert held.record_path.read_bytes().count(b"\n") == 1  # written anew, then appended
    held.update({"last_error": None})
    assert [json.loads(x)["rev"] for x in held.record_path.read_text().splitlines()] == [
        data["rev"] + 1, data["rev"] + 2]
    held.record_path.unlink()  # deleting it is allowed: the next write makes it again
    held.update({"last_error": None})
    assert owned_keys.load(held.record_path).rev == held.plan.rev


# --- the scan's parse, taken by the claim's read (plan_file.parse) -----------------------

def _fresh(path: Path, text: str):
    from modulatio_d.core import markdown
    from modulatio_d.core.plan import parse_plan
    return parse_plan(markdown.load(path, text), expected_id=path.stem)


def test_a_read_of_the_text_the_scan_parsed_takes_that_parse_once(tmp_path, monkeypatch):
    path = tmp_path / "P" / "plans" / "P-P-001.md"
    remembered = plan_file.parse(path, PLAN, remember=True)
    calls = []
    monkeypatch.setattr(plan_file, "parse_plan",
                        lambda doc, expected_id=None: calls.append(1) or _fresh(path, PLAN))
    assert plan_file.parse(path, PLAN) is remembered  # the claim's read: no parse
    assert calls == []
    assert plan_file.parse(path, PLAN) == remembered and calls == [1]  # taken, not kept
    other = tmp_path / "Q" / "plans" / "P-P-001.md"  # same name, another project: its own
    plan_file.parse(path, PLAN, remember=True)
    assert plan_file.parse(other, PLAN) is not None and len(calls) == 3


@given(st.integers(min_value=0, max_value=len(PLAN) - 1),
       st.sampled_from(["", "x", "\n", ":", "9", " ", "'", "#"]),
       st.integers(min_value=0, max_value=3))
@settings(max_examples=100, deadline=None)
def test_any_other_text_than_the_one_parsed_is_parsed_anew(at, put, cut):
    """A person's save between the scan and the claim (any change of any byte): the read
    gives the plan of the text read, or refuses it as a fresh parse would; never the
    plan the scan parsed."""
    path = Path("/nowhere/P/plans/P-P-001.md")  # parse() reads no file
    edited = PLAN[:at] + put + PLAN[at + cut:]
    plan_file.parse(path, PLAN, remember=True)
    try:
        want = _fresh(path, edited)
    except BadFile as e:
        with pytest.raises(BadFile) as got:
            plan_file.parse(path, edited)
        assert str(got.value) == str(e)
        return
    got = plan_file.parse(path, edited)
    assert got == want
    if edited != PLAN:
        assert got is not plan_file.parse(path, PLAN, remember=True)


def test_the_plans_kept_for_the_claim_are_bounded(tmp_path, monkeypatch):
    kept = plan_file._Parsed()
    monkeypatch.setattr(plan_file, "_PARSED", kept)
    monkeypatch.setattr(kept, "MAX", 16)
    for n in range(kept.MAX + 10):
        plan_file.parse(tmp_path / "P" / "plans" / f"P-P-{n:05d}.md",
                        PLAN.replace("P-P-001", f"P-P-{n:05d}"), remember=True)
    assert len(kept.kept) == kept.MAX
    assert str(tmp_path / "P" / "plans" / "P-P-00000.md") not in kept.kept  # the oldest
    assert kept.size == sum(len(text) for text, _ in kept.kept.values())
    monkeypatch.setattr(kept, "TEXT", 3 * len(PLAN) + 10)  # by their texts' size too
    big = PLAN.replace("title: 'Weekly digest'", "title: '" + "x" * (4 * len(PLAN)) + "'")
    plan_file.parse(tmp_path / "P" / "plans" / "P-P-001.md",
                    big.replace("P-P-001", "P-P-001"), remember=True)
    assert str(tmp_path / "P" / "plans" / "P-P-001.md") not in kept.kept  # too long to keep
    plan_file.parse(tmp_path / "P" / "plans" / "P-P-99999.md",
                    PLAN.replace("P-P-001", "P-P-99999"), remember=True)
    assert len(kept.kept) == 3 and kept.size <= kept.TEXT
    assert kept.size == sum(len(text) for text, _ in kept.kept.values())

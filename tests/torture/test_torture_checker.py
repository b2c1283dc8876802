"""The torture lane's own checker can fail: each invariant, broken on purpose in a
hand-made vault (no daemon), is reported; a vault that keeps them all is not."""

from __future__ import annotations

import json

import pytest
from torture_helpers import Checker, TVault, person_lines, split_frontmatter


@pytest.fixture
def tv(tmp_path):
    """A vault folder (no `modulatio init`: the checker reads files only) with one good
    plan of two steps, finished as a daemon would leave it."""
    v = TVault(tmp_path / "vault", tmp_path / "work")
    v.plans.mkdir(parents=True)
    (v.work / "guards").mkdir(parents=True)
    (v.root / ".modulatio").mkdir()
    spec = v.write_plan("C-1", [0.0, 0.0], crlf=True)
    finish(v, spec.text)
    marks = "".join(f"{what} C-1 {i} 1 {100 + i}\n" for i in range(2) for what in ("start", "end"))
    v.marks_path.write_text(marks)
    (v.root / ".modulatio" / "events.jsonl").write_text('{"event": "claimed"}\n')
    return v


def finish(v: TVault, text: str) -> None:
    """What a daemon writes into the person's plan when it completes it."""
    eol = "\r\n" if "\r\n" in text else "\n"
    front, body = split_frontmatter(text)
    lines = front.splitlines()
    lines = [line.replace("status: approved", "status: completed")
             .replace("current_index: 0", "current_index: 2")
             .replace("reflection_log: []", "reflection_log:") for line in lines]
    lines += ["  - {index: 0, outcome: ok}", "  - {index: 1, outcome: ok}", "rev: 4",
              "completed_at: 2026-01-01T00:00:00Z"]
    v.plan_path("C-1").write_bytes(eol.join(["---", *lines, "---", ""]).encode() + body.encode())


def append(path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def edit(v: TVault, old: str, new: str) -> None:
    path = v.plan_path("C-1")
    text = path.read_bytes().decode()
    assert old in text
    path.write_bytes(text.replace(old, new, 1).encode())


def test_a_vault_that_keeps_every_invariant_passes(tv):
    assert Checker(tv).violations() == []


BROKEN = [
    ("overlap", lambda v: append(v.marks_path, "overlap C-1 0 1 7\n"),
     "concurrent runs"),
    ("a step that never ended",
     lambda v: v.marks_path.write_text("start C-1 0 1 1\nend C-1 0 1 1\nstart C-1 1 1 2\n"),
     "C-1 step 1 never ran to its end"),
    ("a re-run without a kill", lambda v: append(
        v.marks_path, "start C-1 1 2 9\nend C-1 1 2 9\n"), "1 re-runs for 0 kill(s)"),
    ("the body", lambda v: edit(v, "a person's own.", "a daemon's own."), "the body changed"),
    ("a person's line", lambda v: edit(v, "notes: kept as written", "notes: rewritten"),
     "person-written lines changed"),
    ("the comment after status", lambda v: edit(v, "   # approved by a person", ""),
     "person-written lines changed"),
    ("a column-0 comment", lambda v: edit(v, "# the steps, a person's\r\n", ""),
     "person-written lines changed"),
    ("line endings", lambda v: edit(v, "notes: kept as written   # nobody reads this\r\n",
                                    "notes: kept as written   # nobody reads this\n"),
     "person-written lines changed"),
    ("not completed", lambda v: edit(v, "status: completed", "status: executing"),
     "not completed"),
    ("in flight", lambda v: edit(v, "rev: 4", "in_flight: {index: 1}\r\nrev: 4"),
     "not completed"),
    ("a plan that does not parse", lambda v: edit(v, "title:", "title: [unclosed"),
     "does not parse"),
    ("events.jsonl", lambda v: append(
        v.root / ".modulatio" / "events.jsonl", '{"event": "cut sh\n'), "events.jsonl:2: not JSON"),
    ("a usage file", lambda v: (v.plans / "C-1.usage.jsonl").write_text("{}\nnot json\n"),
     "C-1.usage.jsonl:2: not JSON"),
    ("a state record", lambda v: (v.root / ".modulatio" / "state" / "P").mkdir(parents=True)
     or (v.root / ".modulatio" / "state" / "P" / "C-1.json").write_text("{"), "not JSON"),
]


@pytest.mark.parametrize("what, change, expect", [pytest.param(*c, id=c[0]) for c in BROKEN])
def test_each_broken_invariant_is_reported(tv, what, change, expect):
    change(tv)
    found = Checker(tv).violations()
    assert any(expect in v for v in found), (what, found)


def test_re_runs_up_to_the_number_of_kills_are_allowed(tv):
    with tv.marks_path.open("a") as f:
        f.write("start C-1 1 2 9\nend C-1 1 2 9\n")
    assert Checker(tv, kills=1).violations() == []
    assert Checker(tv, kills=0).violations()


def test_daemon_keys_may_change_and_move(tv):
    """Keys the daemon owns are not the person's: rewriting them is no violation."""
    edit(tv, "rev: 4", "rev: 5\r\nclaim: {host: h, pid: 1, token: 3}\r\nlast_error: null")
    assert Checker(tv).violations() == []


def test_person_lines_skip_daemon_keys_and_their_continuations():
    front = ("id: X\nstatus: executing   # who\nreflection_log:\n  - {index: 0}\n- {index: 1}\n"
             "# mine\nnotes: a\n")
    assert person_lines(front) == ["id: X\n", "status: <status>   # who\n", "# mine\n",
                                   "notes: a\n"]


def test_events_with_every_line_json_pass(tv):
    (tv.root / ".modulatio" / "events.jsonl").write_text(
        "".join(json.dumps({"event": "e", "n": n}) + "\n" for n in range(3)))
    assert Checker(tv).violations() == []

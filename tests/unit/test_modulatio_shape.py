"""Modulatio-shaped plans (core/modulatio_shape.py): the body's Sub-objectives parser
(property tests: every item form parses, a malformed numbered line always fails closed),
status words, caps, times and transitions written in the file's own style, and the
schedule words (core/schedule_words.py)."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulatio_d.core import markdown, modulatio_shape
from modulatio_d.core.cron import parse_schedule
from modulatio_d.core.errors import BadFile
from modulatio_d.core.markdown import Append
from modulatio_d.core.modulatio_shape import BodyError, parse_body
from modulatio_d.core.plan import PlanStatus, parse_plan
from modulatio_d.core.schedule_words import translate

sys.path.insert(0, str(Path(__file__).parent.parent))
import modulatio_vault as mv  # noqa: E402

FAST = settings(max_examples=25, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))
SEPARATORS = ["—", "–", "-", ":"]
WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)


@st.composite
def phrase(draw) -> str:
    """Words, some in **bold**."""
    words = draw(st.lists(WORD, min_size=1, max_size=4))
    bold = draw(st.lists(st.booleans(), min_size=len(words), max_size=len(words)))
    return " ".join(f"**{w}**" if b else w for w, b in zip(words, bold, strict=True))


@st.composite
def item(draw, number: int) -> tuple[str, str, str, list[str]]:
    """(its lines, title, description, bullets) of one numbered bold item."""
    title = draw(phrase())
    description = draw(st.one_of(st.just(""), phrase()))
    sep = draw(st.sampled_from(SEPARATORS))
    pad = draw(st.sampled_from(["", " ", "  "]))
    head = f"**{number}. {title}**" + (f"{pad} {sep} {description}" if description else "")
    bullets = draw(st.lists(st.builds(lambda k, w: f"{'  ' * k}- {w}: x",
                                      st.integers(0, 2), WORD), max_size=3))
    return "\n".join([head, *bullets]), title, description, bullets


@st.composite
def section(draw) -> tuple[str, list]:
    n = draw(st.integers(1, 6))
    items = [draw(item(i + 1)) for i in range(n)]
    hashes = draw(st.sampled_from(["##", "###"]))
    word = draw(st.sampled_from(["Sub-objectives", "sub-objectives", "SUB-OBJECTIVES"]))
    gap = draw(st.sampled_from(["\n", "\n\n"]))
    body = (f"# A plan\n\n### Diagnostic\nwhy\n\n{hashes} {word}\n\n"
            + gap.join(lines for lines, _, _, _ in items) + "\n\n### Risks\n- none\n")
    return body, items


@FAST
@given(section())
def test_every_item_form_parses_with_its_bullets(case):
    body, items = case
    parsed = parse_body(body)
    assert [p.number for p in parsed] == list(range(1, len(items) + 1))
    for got, (lines, title, description, bullets) in zip(parsed, items, strict=True):
        assert got.title == title
        assert got.description == description
        assert got.text == lines.strip()  # the bullets belong to the item, handed on whole
        assert all(b.strip() in got.text for b in bullets)
        assert body.split("\n")[got.line - 1].startswith(f"**{got.number}.")


MALFORMED = st.sampled_from([
    "**{n}. Title without its closing bold",
    "**{n}. Title** and words with no separator",
    "**{n}.** — an empty title",
    "**{n}. Title** ; a semicolon is no separator",
    "  **{n}. Title**text",
])


@FAST
@given(section(), MALFORMED, st.data())
def test_a_malformed_numbered_line_always_fails_closed(case, bad, data):
    body, items = case
    lines = body.split("\n")
    start = next(i for i, x in enumerate(lines) if "sub-objectives" in x.lower()) + 1
    end = next(i for i, x in enumerate(lines) if x.startswith("### Risks"))
    at = data.draw(st.integers(start, end))
    lines.insert(at, bad.format(n=data.draw(st.integers(1, 9))))
    with pytest.raises(BodyError) as e:
        parse_body("\n".join(lines))
    assert e.value.line == at + 1  # the line it names is the bad one


def test_no_section_or_no_item_fails_closed_and_fences_are_not_items():
    with pytest.raises(BodyError):
        parse_body("# Plan\n\n### Diagnostic\nx\n")
    with pytest.raises(BodyError):
        parse_body("### Sub-objectives\nfree text only\n### Risks\n")
    fenced = "### Sub-objectives\n**1. Real** — yes\n```\n**2. not an item\n```\n"
    assert [i.title for i in parse_body(fenced)] == ["Real"]
    assert "**2. not an item" in parse_body(fenced)[0].text


def doc(text: str, name: str = "TST-PLAN-001") -> object:
    return markdown.load(Path(f"{name}.md"), text)


def plan_text(**meta) -> str:
    import yaml
    data = {"id": "TST-PLAN-001", "project_code": "tst", "status": "draft", **meta}
    return "---\n" + yaml.safe_dump(data, sort_keys=False) + "---\n\n" + mv.body("T", 2)


def test_status_words_title_and_steps_are_read():
    for word, status in (("done", PlanStatus.COMPLETED), ("declined", PlanStatus.ABORTED),
                         ("executing", PlanStatus.EXECUTING)):
        plan = parse_plan(doc(plan_text(status=word)), "TST-PLAN-001")
        assert plan.status is status and plan.shape.status_word == word
    plan = parse_plan(doc(plan_text()), "TST-PLAN-001")
    assert plan.title == "T"
    assert [s.agent for s in plan.sub_objectives] == ["default", "default"]
    assert plan.sub_objectives[0].objective.startswith("**1. Step 1 of **T**** — do part 1")
    assert "Done when: part 1 works" in plan.sub_objectives[0].objective
    no_heading = "---\nid: TST-PLAN-001\nstatus: done\n---\nSub-objectives:\n"
    assert parse_plan(doc(no_heading), "TST-PLAN-001").title == "TST-PLAN-001"  # the id


def test_a_plan_of_this_projects_shape_is_left_alone():
    text = "---\nid: P-1\nstatus: approved\nsub_objectives: [a]\n---\n### Sub-objectives\n"
    assert parse_plan(doc(text, "P-1"), "P-1").shape is None


def test_caps_are_the_budget_or_a_validation_error():
    plan = parse_plan(doc(plan_text(max_tokens=100, max_cost_usd=1.5, max_wall_clock_min=90)),
                      "TST-PLAN-001")
    assert (plan.budget.tokens, plan.budget.cost_usd, plan.budget.wall_clock,
            plan.budget.since_start) == (100, 1.5, 5400.0, True)
    for bad in ({"max_tokens": "lots"}, {"max_tokens": 1.5}, {"max_cost_usd": -1},
                {"max_wall_clock_min": True}, {"max_tokens": 5, "budget": {"tokens": 5}},
                {"tokens_used": "x"}):
        with pytest.raises(BadFile):
            parse_plan(doc(plan_text(**bad)), "TST-PLAN-001")


def test_a_broken_body_parses_with_no_step_so_the_daemon_can_pause_it():
    text = plan_text(status="executing", current_index=1).replace("**2. Step 2", "**2 Step")
    text = re.sub(r"(?m)^\*\*1\. .*$", "**1. Step one** no separator", text)
    plan = parse_plan(doc(text), "TST-PLAN-001")
    assert plan.sub_objectives == () and plan.current_index == 1
    assert "does not parse" in plan.shape.body_error and plan.shape.body_error_line


NOW = datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=UTC)


def test_writes_are_in_the_files_words_times_and_transitions():
    shape = parse_plan(doc(plan_text(status="executing", status_transitions=[
        mv.transition("approved", "user", mv.APPROVED)])), "TST-PLAN-001").shape
    out = modulatio_shape.file_values(shape, {"status": "completed", "completed_at": NOW,
                                              "in_flight": {"started_at": "2026-12-02T01:00:00Z"}},
                                      NOW, "daemon")
    assert out["status"] == "done"
    assert out["completed_at"] == "2026-12-02T01:02:03.456789+00:00"
    assert out["in_flight"] == {"started_at": "2026-12-02T01:00:00.000000+00:00"}
    log = out["status_transitions"]
    assert isinstance(log, Append) and log.start == 1
    assert log[1] == {"to": "done", "decided_by": "daemon",
                      "decided_at": "2026-12-02T01:02:03.456789+00:00", "note": None}
    assert shape.after(out).status_word == "done" and len(shape.after(out).transitions) == 2
    failed = modulatio_shape.file_values(shape, {"status": "failed"}, NOW, "daemon", "why")
    assert failed["status"] == "paused"
    assert failed["status_transitions"][-1]["note"] == "failed: why"
    same = modulatio_shape.file_values(shape, {"status": "executing"}, NOW, "daemon")
    assert "status_transitions" not in same  # no change of status, no entry
    assert modulatio_shape.file_values(None, {"status": "completed"}, NOW, "d") == \
        {"status": "completed"}


def test_reflection_entries_of_modulatio_are_read_and_described():
    plan = parse_plan(doc(plan_text(status="paused", current_index=1,
                                    reflection_log=mv.REFLECTION)), "TST-PLAN-001")
    assert plan.reflection_log == mv.REFLECTION
    assert modulatio_shape.describe_entry(plan.reflection_log[0]) == \
        "after step 1 continue - step 1 went fine; the next one can start"


@pytest.mark.parametrize(("words", "fields"), [
    ("daily 06:00", "0 6 * * *"), ("DAILY 6:05", "5 6 * * *"),
    ("weekly mon 09:00", "0 9 * * mon"), ("weekly sun 23:59", "59 23 * * sun"),
    ("monthly 1 07:30", "30 7 1 * *"), ("hourly :15", "15 * * * *"),
    ("30m", "*/30 * * * *"), ("1m", "* * * * *"), ("120m", "0 */2 * * *"),
    ("6h", "0 */6 * * *"), ("1h", "0 * * * *"), ("1d", "0 0 * * *"), ("24h", "0 0 * * *"),
])
def test_schedule_words_translate_to_five_fields(words, fields):
    assert translate(words) == fields
    assert parse_schedule(words) == fields  # an alias form wherever a schedule is read


@pytest.mark.parametrize("words", ["45m", "5h", "2d", "daily 24:00", "weekly xyz 09:00",
                                   "monthly 32 01:00", "hourly :60", "daily noon"])
def test_schedule_words_that_cannot_be_translated_are_refused(words):
    with pytest.raises(ValueError, match=words):
        parse_schedule(words)
    assert translate("0 6 * * *") is None and translate("@daily") is None


def test_the_wall_clock_cap_counts_since_execution_started_at(tmp_path):
    from modulatio_d.daemon.budget import Budget

    text = plan_text(status="executing", max_wall_clock_min=30,
                     execution_started_at="2026-12-02T00:00:00.000000+00:00")
    plan = parse_plan(doc(text), "TST-PLAN-001")
    started = datetime(2026, 12, 2, tzinfo=UTC)
    early = Budget(tmp_path / "TST-PLAN-001.md", lambda: started + timedelta(minutes=29))
    late = Budget(tmp_path / "TST-PLAN-001.md", lambda: started + timedelta(minutes=31))
    assert early.exhausted(plan) is None  # no attempt counted: the clock since the start is
    assert "wall_clock exhausted" in late.exhausted(plan)[0]


def test_token_caps_count_the_files_counters(tmp_path):
    from modulatio_d.daemon.budget import Budget

    plan = parse_plan(doc(plan_text(max_tokens=1000, tokens_used=1200)), "TST-PLAN-001")
    assert "tokens exhausted: 1200 of 1000" in Budget(tmp_path / "x.md").exhausted(plan)[0]

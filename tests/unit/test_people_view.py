"""The people's view of a plan (core/people.py) and the daemon keys' stable order."""

from __future__ import annotations

from pathlib import Path

from modulatio_d.core import markdown, people
from modulatio_d.core.plan import DAEMON_KEYS, parse_plan

PLAN = """---
id: P-P-001
status: {status}
sub_objectives:
  - Collect sources
  - {{title: Build the digest, run: make digest}}
  - Publish
{extra}---
"""


def plan_of(status: str, extra: str = ""):
    text = PLAN.format(status=status, extra=extra)
    return parse_plan(markdown.load(Path("P-P-001.md"), text), "P-P-001")


def test_running_step_is_named_from_one():
    plan = plan_of("executing", "current_index: 1\nin_flight: {index: 1, attempt: 2, token: 3, "
                                "started_at: '2026-12-02T14:02:09Z'}\n"
                                "reflection_log:\n  - {index: 0, title: Collect sources, "
                                "attempt: 1, outcome: ok, exit: exit 0, duration_s: 75.2, "
                                "ended_at: '2026-12-02T14:01:00Z'}\n")
    assert people.progress(plan) == ("1/3 done · running step 2 “Build the digest” "
                                     "(attempt 2) since 14:02 UTC")
    assert people.last_result(plan) == ("step 1 “Collect sources” attempt 1: ok (exit 0) in "
                                        "1m15s, at 14:01 UTC")


def test_each_status_in_words():
    assert people.progress(plan_of("draft")) == "0/3 done · draft"
    assert people.progress(plan_of("approved")) == "0/3 done · waiting for a daemon"
    assert people.progress(plan_of("paused", "current_index: 2\n")) == \
        "2/3 done · paused at step 3 “Publish”"
    assert people.progress(plan_of("completed", "current_index: 3\ncompleted_at: "
                                                "2026-12-02T15:00:00Z\n")) == \
        "3/3 done · completed 2026-12-02 15:00 UTC"
    assert people.last_result(plan_of("draft")) is None


def test_stale_compares_with_the_file():
    plan = plan_of("approved", 'progress: "0/3 done · waiting for a daemon"\n')
    assert people.stale(plan) == {}
    assert people.stale(plan_of("approved", "progress: 7\n")) == \
        {"progress": "0/3 done · waiting for a daemon"}  # not text: the daemon writes it over


def test_new_daemon_keys_go_in_their_place():
    text = "---\nid: x\nstatus: done   # mine\ncurrent_index: 1\nrev: 4\n---\nbody\n"
    out = markdown.set_keys(text, {"claim": {"token": 1}, "progress": "p",
                                   "approved_at": "t"}, order=DAEMON_KEYS)
    assert out == ("---\nid: x\nstatus: done   # mine\napproved_at: t\nprogress: p\n"
                   "current_index: 1\nclaim: {token: 1}\nrev: 4\n---\nbody\n")
    # gone and back (a claim, removed when a plan ends): the same place again
    gone = markdown.set_keys(out, {"claim": markdown.DELETE}, order=DAEMON_KEYS)
    assert markdown.set_keys(gone, {"claim": {"token": 1}}, order=DAEMON_KEYS) == out

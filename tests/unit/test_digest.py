"""Digests of steps (core/digest.py) and the runner's edit watch (daemon/edits.py)."""

from __future__ import annotations

from pathlib import Path

from modulatio_d.core import digest, markdown
from modulatio_d.core.plan import parse_plan
from modulatio_d.daemon.edits import Watch


def plan_of(steps: str, extra: str = ""):
    text = f"---\nid: P-P-001\nstatus: executing\nsub_objectives:\n{steps}{extra}---\n"
    return parse_plan(markdown.load(Path("P-P-001.md"), text), "P-P-001")


ABC = "  - {run: a}\n  - {run: b}\n  - {run: c}\n"


def test_meaning_counts_not_form():
    a = plan_of(ABC).sub_objectives
    same = plan_of("  - run: a    # a comment\n  - {run: 'b', title: renamed}\n  - {run: c}\n")
    assert digest.chain(a) == digest.chain(same.sub_objectives)
    other = plan_of("  - {run: a}\n  - {run: b, retries: 1}\n  - {run: c}\n")
    assert digest.chain(a) != digest.chain(other.sub_objectives)
    assert digest.chain(a[:2]) == digest.extend(digest.chain(a[:1]), a[1])


def test_prefix_and_approval():
    steps = plan_of(ABC).sub_objectives
    two = digest.render(2, 3, digest.chain(steps[:2]))
    assert digest.parse(two)[:2] == (2, 3)
    assert digest.prefix_matches(two, steps)
    inserted = plan_of("  - {run: x}\n" + ABC).sub_objectives
    assert not digest.prefix_matches(two, inserted)
    assert digest.prefix_matches(two, plan_of(ABC + "  - {run: d}\n").sub_objectives)
    assert not digest.prefix_matches(two, steps[:1])  # removed
    assert digest.prefix_matches(None, steps) and digest.prefix_matches("junk", steps)
    assert digest.approved_matches(digest.of_plan(steps), steps)
    assert not digest.approved_matches(digest.of_plan(steps), inserted)
    assert digest.parse(digest.render(0, 3, digest.EMPTY)) == (0, 3, digest.EMPTY)


def test_watch_pauses_for_an_edit_at_or_before_the_running_step():
    plan = plan_of(ABC, "current_index: 1\n")
    watch = Watch()
    step = plan.sub_objectives[1]
    watch.ran(step)
    value = watch.after(plan, step)  # step 2 ran: digest of the first two
    moved = plan_of(ABC, f"current_index: 2\nsteps_digest: '{value}'\n")
    assert watch.edited(moved) is None
    later = plan_of(ABC + "  - {run: d}\n", f"current_index: 2\nsteps_digest: '{value}'\n")
    assert watch.edited(later) is None  # after the running one: taken as it is
    above = plan_of("  - {run: x, title: inserted}\n" + ABC,
                    f"current_index: 2\nsteps_digest: '{value}'\n"
                    "reflection_log:\n  - {index: 0, title: a}\n  - {index: 1, title: b}\n")
    reason, details = watch.edited(above)
    assert "at or before step 2" in reason
    assert "+step 1: inserted" in details and "current_index: N-1" in details


def test_watch_pauses_for_a_retried_step_changed_between_attempts():
    plan = plan_of(ABC, "current_index: 1\n")
    watch = Watch()
    watch.ran(plan.sub_objectives[1])
    changed = plan_of("  - {run: a}\n  - {run: b2}\n  - {run: c}\n", "current_index: 1\n")
    reason, _ = watch.edited(changed)
    assert reason.startswith("step 2 (b2) was changed while it ran")

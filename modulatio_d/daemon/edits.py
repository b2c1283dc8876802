"""Edits of a running plan's steps, judged at each step boundary (core/digest.py).

The runner asks `Watch.edited(plan)` before it starts each step (and before it
completes the plan). It answers with (reason, details) for a ticket when:
- the plan is bound to its approval (`approved_digest`) and the steps are no
  longer the ones approved;
- the steps the run went through (`steps_digest`: the first n) are not the
  file's first n any more: a step at or before the running one was changed,
  inserted or removed;
- the step that just ran (and is to be tried again) was changed meanwhile.
Edits of steps after the running one pass (when the approval is not bound).
The runner then pauses the plan with a ticket and removes `steps_digest`; a
person approving again starts from the steps as they are then.

Checking is O(steps): it is done again only when the file's steps changed
since the last check (a new parse) or the digest is not the one we wrote.
"""

from __future__ import annotations

from modulatio_d.core import digest
from modulatio_d.core.errors import BadFile
from modulatio_d.core.plan import Plan, SubObjective
from modulatio_d.store import reflections

PAUSE_CHANGES = {"in_flight": None, "steps_digest": None}
"""What the pause for an edit writes besides the status (no digest: a new approval
starts from the steps as they are then)."""


class Watch:
    def __init__(self) -> None:
        self._steps: tuple[SubObjective, ...] | None = None  # last checked, found fine
        self._digest: str | None = None
        self._ran: tuple[int, str] | None = None  # (index, step digest) of the latest attempt

    def ran(self, step: SubObjective) -> None:
        self._ran = (step.index, digest.of_step(step))

    def after(self, plan: Plan, step: SubObjective) -> str:
        """`steps_digest` once `step` (as it ran) is done: the run's first index + 1 steps."""
        parsed = digest.parse(plan.steps_digest)
        if parsed is not None and parsed[0] == step.index:
            base = parsed[2]
        else:  # none yet, or a person moved current_index: the file's steps before it
            base = digest.chain(plan.sub_objectives[:step.index])
        value = digest.render(step.index + 1, plan.total, digest.extend(base, step))
        self._digest = value
        return value

    def edited(self, plan: Plan) -> tuple[str, str] | None:
        steps = plan.sub_objectives
        index = plan.current_index
        if self._ran is not None and self._ran[0] == index < plan.total \
                and digest.of_step(steps[index]) != self._ran[1]:
            return (f"step {index + 1} ({steps[index].title}) was changed while it ran; "
                    f"approve to run it as it is now",
                    f"Step {index + 1} was edited in the file between its attempts. "
                    f"Check the change, then approve (it runs as it is now) or decline.")
        if steps is self._steps and plan.steps_digest == self._digest:
            return None
        if not digest.approved_matches(plan.approved_digest, steps):
            approved = digest.parse(plan.approved_digest)
            return ("the steps changed since the plan was approved; approve it again to run "
                    "them",
                    f"The plan was approved with {approved[0] if approved else '?'} steps; the "
                    f"file now has {plan.total}, and they are not the ones approved. Approving "
                    f"(the ticket, or `modulatio plan approve {plan.id}`) binds the approval "
                    f"to the steps as they are now.")
        if not digest.prefix_matches(plan.steps_digest, steps):
            return self._misaligned(plan)
        self._steps, self._digest = steps, plan.steps_digest
        return None

    def _misaligned(self, plan: Plan) -> tuple[str, str]:
        n, total, _ = digest.parse(plan.steps_digest) or (0, 0, "")
        ran = _titles_ran(plan, n)
        delta = plan.total - total
        now = [s.title for s in plan.sub_objectives[:max(0, n + delta)]]
        return (f"steps at or before step {n} were changed, inserted or removed while the "
                f"plan ran; say where to go on",
                f"The plan had run steps 1 to {n} when its file changed there:\n\n"
                f"```diff\n{digest.diff(ran, now)}\n```\n\n"
                f"It goes on at step {plan.current_index + 1} (`current_index: "
                f"{plan.current_index}`) of the file as it is now. To go on from another "
                f"step, set `current_index` in the plan (step N is `current_index: N-1`), "
                f"then approve; decline to abort the plan.")


def _titles_ran(plan: Plan, n: int) -> list[str]:
    """The titles of steps 0..n-1 as the reflection log has them (as they ran)."""
    titles = ["?"] * n
    try:  # the entries moved out of the plan file too (store/reflections.py)
        log = reflections.whole(plan)
    except (BadFile, OSError):
        log = plan.reflection_log  # the titles of the earlier steps then show as "?"
    for e in log:
        i = e.get("index")
        if isinstance(i, int) and 0 <= i < n and e.get("title"):
            titles[i] = str(e["title"])
    return titles

"""Usage and budget of one running plan: what its attempts cost, and whether it may go on.

After each attempt the executor's usage lines (its scratch file
`<plan-id>.runs/<index>-<attempt>.usage.jsonl`, or one line of zeros when it
reported nothing: one line per call) get the plan, step, attempt and duration
(`fold`, in memory: the totals count them at once) and are then appended to
`<plan-id>.usage.jsonl` (`flush`), before the attempt's result is written to
the plan. A flush that fails (EIO, ENOSPC) keeps the lines pending: the runner
tries again with the patience of a plan write, then records the attempt's
result anyway and tries again at each step boundary and as the run ends. An
attempt that ran is never run again because its bookkeeping hiccuped; a
retried append never writes its lines twice (store/usage.py `append`).
Before each attempt the plan's `budget` is checked: tokens, cost_usd and
wall_clock, the last counted as the time its attempts took (hours spent paused
do not count). At 80% a warning is logged once per budget; past 100% the plan
must pause (the runner opens a critical ticket).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from modulatio_d.core.plan import Plan, SubObjective
from modulatio_d.core.times import format_time
from modulatio_d.daemon.attempt import Attempt
from modulatio_d.store import usage

log = logging.getLogger("modulatio.runner")
budget_log = logging.getLogger("modulatio.context_budget")
SOFT_LIMIT = 0.8


class Budget:
    def __init__(self, plan_path: Path, clock: Callable[[], datetime] | None = None,
                 events: Callable[..., None] = lambda *a, **k: None):
        self.clock = clock  # for a wall_clock counted since execution_started_at
        self.last: tuple[int, float] = (0, 0.0)  # tokens and cost of the last attempt folded
        self.events = events  # budget_warning (for hooks), once per budget like the log line
        self.project = plan_path.parent.parent.name
        self.usage_path = usage.usage_path(plan_path)
        self._totals: usage.Totals | None = None  # read at the first use (`totals`)
        self.warned: set[str] = set()
        # Blocks of lines folded, not yet appended, each with whether an append of it
        # failed already (its retry then checks the file's tail: store/usage.py).
        self.pending: list[tuple[list[dict], bool]] = []
        self._sum: tuple[int, object, float] = (0, None, 0.0)  # (entries, last one, sum)

    @property
    def totals(self) -> usage.Totals:
        """The plan's usage so far: its file read once, when first needed (a plan with no
        token or cost budget reads it only when a step's usage is folded)."""
        if self._totals is None:
            self._totals = usage.totals(self.usage_path)
        return self._totals

    @totals.setter
    def totals(self, value: usage.Totals) -> None:
        self._totals = value

    def fold(self, plan: Plan, step: SubObjective, number: int, attempt: Attempt,
             scratch: Path) -> None:
        """Add the usage of attempt `number` (its executor wrote `scratch`)."""
        try:
            lines = usage.read_lines(scratch, warn=True, start=attempt.usage_from)
        except OSError as e:  # the runs folder is unusable (the step could not start)
            log.warning("usage of plan %s step %d not read: %s", plan.id, step.index + 1, e)
            lines = []
        if not lines:  # one line per executor call, even when it reported nothing
            lines = [{"timestamp": format_time(attempt.ended), "model": None,
                        "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
                        "call_id": f"{plan.id}-{step.index}-{number}",
                        "agent_id": step.agent or step.kind.value}]
        for r in lines:
            for key in usage.FIELDS:
                r.setdefault(key, None)
            r.update(plan_id=plan.id, step_index=step.index, attempt=number)
            r.setdefault("duration_s", attempt.duration_s)
        before = self.totals
        self.totals = self.totals.add(lines)
        self.last = (self.totals.tokens - before.tokens, self.totals.cost_usd - before.cost_usd)
        self.pending.append((lines, False))

    def flush(self) -> None:
        """Append the pending blocks in order; raises OSError when one cannot be (it and
        those after it stay pending)."""
        while self.pending:
            lines, tried = self.pending[0]
            try:
                usage.append(self.usage_path, lines, again=tried)
            except OSError:
                self.pending[0] = (lines, True)
                raise
            self.pending.pop(0)

    def pending_lines(self) -> list[dict]:
        return [line for lines, _ in self.pending for line in lines]

    def spent(self, plan: Plan, reflection_log: list[dict]) -> list[tuple[str, float, float]]:
        """(budget, used, limit) for each budget the plan sets."""
        b = plan.budget
        # Running time is the time its attempts took: hours spent paused do not count.
        # Entries moved out of the plan (store/reflections.py) count by their running total.
        running = self._running(reflection_log) + float(
            (plan.reflection_archived or {}).get("duration_s") or 0) if b.wall_clock else 0.0
        if b.since_start and self.clock is not None:  # Modulatio's max_wall_clock_min
            began = plan.execution_started_at
            running = (self.clock() - began).total_seconds() if began else 0.0
        tokens, cost = ((self.totals.tokens, self.totals.cost_usd)
                        if b.tokens or b.cost_usd or plan.shape is not None else (0, 0.0))
        if plan.shape is not None:  # its counters include what it used before this daemon
            tokens = max(tokens, plan.shape.tokens_used)
            cost = max(cost, plan.shape.cost_usd_used)
        spent = [("tokens", tokens, b.tokens),
                 ("cost_usd", cost, b.cost_usd),
                 ("wall_clock", running, b.wall_clock)]
        return [(name, used, limit) for name, used, limit in spent if limit]

    def _running(self, log: list[dict]) -> float:
        """The sum of the log's duration_s, added up from where the last sum stopped when
        the log is that one grown (its entries the same objects: our own writes); a log
        read anew (a person's save) is summed whole. O(new entries) a step."""
        n, last, total = self._sum
        if not (0 < n <= len(log) and log[n - 1] is last):
            n, total = 0, 0.0
        total += sum(float(e.get("duration_s") or 0) for e in log[n:])
        self._sum = (len(log), log[-1] if log else None, total)
        return total

    def room_after(self, plan: Plan, reflection_log: list[dict]) -> bool:
        """Whether no budget is past its limit once `reflection_log` is written."""
        return not any(used > limit for _, used, limit in self.spent(plan, reflection_log))

    def exhausted(self, plan: Plan) -> tuple[str, str] | None:
        """(reason, details for the ticket) when a budget is spent; warns once at 80%."""
        for name, used, limit in self.spent(plan, plan.reflection_log):
            if used > limit:
                return (f"budget {name} exhausted: {used:g} of {limit:g}",
                        f"The plan used {used:g} of its {name} budget of {limit:g}. "
                        f"Raise `budget` in the plan before approving, or decline.")
            if used >= SOFT_LIMIT * limit and name not in self.warned:
                self.warned.add(name)
                budget_log.warning("plan %s used %.0f%% of its %s budget (%g of %g)",
                                   plan.id, 100 * used / limit, name, used, limit,
                                   extra={"modulatio_event": "context_budget_soft_warn",
                                          "plan_id": plan.id, "budget": name,
                                          "used": used, "limit": limit})
                self.events("budget_warning", project=self.project, plan=plan.id, budget=name,
                            used=used, limit=limit)
        return None

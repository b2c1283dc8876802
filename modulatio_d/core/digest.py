"""Digests of a plan's steps: what a run was started against, what was approved.

Pure. A step's digest is a hash of its meaning (the parsed SubObjective less
its index and title, as canonical JSON): re-indenting, re-quoting, commenting
or retitling a step changes nothing; changing its command, objective, agent, timeout, retries,
on_failure, cwd or env does.

`steps_digest` (a daemon key) is `"<n>/<total> <hex>"`: the chained digest
of the first n steps (the ones that ran: n is current_index when written)
and the plan's step count at that write. The runner extends it by the step
it ran (as it ran) each time it moves on, and compares it with the file's
first n steps at every step boundary: a change, insertion or removal at or
before the running step shows as a mismatch (docs/plan-file.md, "Editing a
running plan").

`approved_digest` (written by the commands that approve) is the digest of
all the steps, `"<total>/<total> <hex>"`: a run that finds the file's steps
differ pauses for a new approval.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
from collections.abc import Sequence

from modulatio_d.core.plan import SubObjective

_FORM = re.compile(r"(\d+)/(\d+) ([0-9a-f]{16})")
EMPTY = ""


def of_step(step: SubObjective) -> str:
    # A run takes a step's digest three times (the claim's record, before and after the
    # step): kept by the step object (frozen), which the entry holds so its id stays its.
    kept = _of_step.get(id(step))
    if kept is not None and kept[0] is step:
        return kept[1]
    if len(_of_step) >= 256:
        _of_step.clear()
    _of_step[id(step)] = (step, value := _of_step_now(step))
    return value


_of_step: dict[int, tuple[SubObjective, str]] = {}


_FIELDS = tuple(f.name for f in dataclasses.fields(SubObjective))


def _of_step_now(step: SubObjective) -> str:
    # What dataclasses.asdict gives, as JSON: no copy of the step's values is needed
    # for that (its one nested dataclass, retry_delay, is made a dict).
    fields = {name: getattr(step, name) for name in _FIELDS}
    fields.pop("index")
    fields.pop("title")  # a new name for a step changes nothing it does
    if fields.get("retry_delay") is None:  # digests of steps without one stay as they were
        fields.pop("retry_delay", None)
    else:
        fields["retry_delay"] = dataclasses.asdict(fields["retry_delay"])
    text = json.dumps(fields, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def extend(prefix: str, step: SubObjective) -> str:
    """The chained digest of the steps of `prefix` followed by `step`."""
    return hashlib.sha256(f"{prefix}:{of_step(step)}".encode()).hexdigest()[:16]


def chain(steps: Sequence[SubObjective]) -> str:
    out = EMPTY
    for step in steps:
        out = extend(out, step)
    return out


def render(n: int, total: int, hex_: str) -> str:
    return f"{n}/{total} {hex_ or '0' * 16}"


def parse(value: object) -> tuple[int, int, str] | None:
    """(n, total, hex) of a digest key's text; None when it is not one."""
    if not isinstance(value, str):
        return None
    m = _FORM.fullmatch(value.strip())
    if m is None:
        return None
    hex_ = m.group(3)
    return int(m.group(1)), int(m.group(2)), EMPTY if hex_ == "0" * 16 else hex_


def of_plan(steps: Sequence[SubObjective]) -> str:
    """`approved_digest` of these steps."""
    return render(len(steps), len(steps), chain(steps))


def prefix_matches(value: object, steps: Sequence[SubObjective]) -> bool:
    """Whether the first n steps of `steps` are the ones `value` (steps_digest) covers."""
    parsed = parse(value)
    if parsed is None:
        return True  # none yet (or unreadable): nothing to hold the file to
    n, _total, hex_ = parsed
    return n <= len(steps) and chain(steps[:n]) == hex_


def approved_matches(value: object, steps: Sequence[SubObjective]) -> bool:
    parsed = parse(value)
    if parsed is None:
        return True  # not bound to its steps
    n, _total, hex_ = parsed
    return n == len(steps) and chain(steps) == hex_


def diff(ran: Sequence[str], now: Sequence[str]) -> str:
    """A unified diff of step titles, numbered from 1, for a ticket."""
    old = [f"step {i + 1}: {t}" for i, t in enumerate(ran)]
    new = [f"step {i + 1}: {t}" for i, t in enumerate(now)]
    lines = list(difflib.unified_diff(old, new, "steps as they ran", "steps in the file now",
                                      lineterm="", n=1))
    return "\n".join(lines) if lines else "(the titles are the same: a step's command, " \
                                          "objective or settings changed)"

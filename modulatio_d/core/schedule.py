"""The scheduling vocabulary of plans: pure rules, no I/O, no clock.

Keys of a plan (docs/plan-file.md, "Scheduling"):
- `not_before: TIME`: not claimable before that instant.
- `expires_at: TIME`: a plan no step of which has started by then is failed
  with reason `expired` by the daemon that finds it (it never runs).
- `after: [PLAN-ID, ...]`: claimable only once every one of those plans (same
  project) is `completed`. One `failed` or `aborted` makes the plan blocked: it
  is shown so (status, plan show) and waits; `plan retry` of the dependency or
  `plan unblock` (which drops the failed ones from `after`) lets it go on. A
  missing dependency keeps it waiting and is shown as missing. Blocked is a
  state people read, not a status written into the file: the file stays
  `approved`, so nothing a person wrote is overwritten and no daemon has to
  claim the plan to say it.
- `concurrency_key: TEXT`: at most one plan with that key runs at a time in
  the vault: a limit of one slot (store/slots.py key_group), taken with the
  capacity slots before the claim (daemon/admission.py).
Keys of a step:
- `retry_delay: DURATION` (with optional `backoff: FACTOR`, `max_delay:
  DURATION`, `jitter: DURATION`): a failed attempt that will be retried
  releases the plan instead of retrying at once; it becomes claimable again
  at `retry.at` (the daemon's key), holding no worker meanwhile. Attempt n
  (counted from 1) waits min(retry_delay * backoff^(n-1), max_delay) plus a
  jitter in [0, jitter) that is a function of (plan, step, attempt), so the
  same failure always waits the same time whoever computes it.

Cycles in `after` are found by `find_cycle` over the project's plans.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from modulatio_d.core import checks, names
from modulatio_d.core.errors import FileFault
from modulatio_d.core.markdown import Document
from modulatio_d.core.times import parse_time

MAX_AFTER = 100
"""Dependencies a plan may name."""
MAX_BACKOFF = 100.0
"""The largest backoff factor."""


@dataclass(frozen=True)
class RetryDelay:
    delay: float
    """Seconds before the first retry."""
    backoff: float = 1.0
    max_delay: float | None = None
    jitter: float = 0.0

    def wait(self, failures: int, seed: str) -> float:
        """Seconds to wait after the `failures`-th failed attempt (1 for the first)."""
        n = max(failures, 1) - 1
        try:
            base = self.delay * self.backoff ** n
        except OverflowError:
            base = float("inf")
        if self.max_delay is not None:
            base = min(base, self.max_delay)
        base = min(base, checks.MAX_DURATION_S)
        return base + fraction(f"{seed}#{failures}") * self.jitter


@dataclass(frozen=True)
class Schedule:
    not_before: datetime | None = None
    expires_at: datetime | None = None
    after: tuple[str, ...] = ()
    concurrency_key: str | None = None


def claimable_from(plan) -> datetime | None:
    """The latest of a plan's not_before and its pending retry's time (`retry_wait.at`)."""
    at = parse_time((plan.retry_wait or {}).get("at")) if plan.retry_wait else None
    times = [t for t in (plan.schedule.not_before, at) if t is not None]
    return max(times) if times else None


def fraction(seed: str) -> float:
    """A number in [0, 1) that depends only on `seed` (sha256): every daemon agrees."""
    digest = hashlib.sha256(seed.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def parse_plan_schedule(doc: Document, plan_id: str) -> Schedule:
    """The scheduling keys of a plan; each problem names the line of its key."""
    data, fail = doc.data, doc.fault()
    not_before = checks.time(fail, data, "not_before")
    expires_at = checks.time(fail, data, "expires_at")
    if not_before and expires_at and expires_at <= not_before:
        fail(f"expires_at {expires_at.isoformat()} is not after not_before "
             f"{not_before.isoformat()}", "expires_at",
             hint="the plan could never start: move one of them")
    after = _after(doc, fail, data.get("after"), plan_id)
    key = data.get("concurrency_key")
    if key is not None:
        if not isinstance(key, str) or not key.strip() or len(key) > 200 or \
                any(c in key for c in "\0\n\r/"):
            fail(f"concurrency_key {checks.show(key)} must be a short one-line text",
                 "concurrency_key", hint="e.g. concurrency_key: deploy-prod")
        key = key.strip()
    return Schedule(not_before, expires_at, after, key)


def _after(doc: Document, fail: FileFault, raw: object, plan_id: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        fail("after must be a list of plan ids", "after", hint="e.g. after: [SALES-P-001]")
    if len(raw) > MAX_AFTER:
        fail(f"after names {len(raw)} plans, more than {MAX_AFTER}", "after")
    seen: list[str] = []
    for i, item in enumerate(raw):
        line = doc.line_of_item(raw, i) if isinstance(raw, list) else None
        if not isinstance(item, str) or not names.is_valid(item):
            fail(f"after item {i + 1} ({checks.show(item)}) is not a plan id", "after",
                 line=line, hint="name plans of this project, e.g. after: [SALES-P-001]")
        if item == plan_id:
            fail(f"after names the plan itself ({item})", "after", line=line)
        if item not in seen:
            seen.append(item)
    return tuple(seen)


def parse_retry_delay(fail: FileFault, raw: Mapping, where: str,
                      line: int | None) -> RetryDelay | None:
    """`retry_delay`, `backoff`, `max_delay`, `jitter` of one step (a mapping)."""
    extra = [k for k in ("backoff", "max_delay", "jitter") if raw.get(k) is not None]
    if raw.get("retry_delay") is None:
        if extra:
            fail(f"{where}: {extra[0]} needs retry_delay", line=line,
                 hint="e.g. retry_delay: 30s with backoff: 2")
        return None
    try:
        delay = checks.parse_duration(raw["retry_delay"])
    except ValueError as e:
        fail(f"{where}: retry_delay: {e}", line=line)
    backoff = raw.get("backoff", 1)
    if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or \
            not 1 <= backoff <= MAX_BACKOFF:
        fail(f"{where}: backoff {checks.show(backoff)} is not a number from 1 to "
             f"{MAX_BACKOFF:g}", line=line, hint="each retry waits this many times longer")
    values: dict[str, float | None] = {}
    for key in ("max_delay", "jitter"):
        values[key] = None
        if raw.get(key) is not None:
            try:
                values[key] = checks.parse_duration(raw[key])
            except ValueError as e:
                fail(f"{where}: {key}: {e}", line=line)
    if values["max_delay"] is not None and values["max_delay"] < delay:
        fail(f"{where}: max_delay is shorter than retry_delay", line=line)
    return RetryDelay(delay, float(backoff), values["max_delay"], values["jitter"] or 0.0)


# --- dependencies ----------------------------------------------------------------

BLOCKING = frozenset({"failed", "aborted"})


@dataclass(frozen=True)
class Waiting:
    """Why a plan with `after` cannot start yet (all empty: it can)."""

    pending: tuple[str, ...] = ()
    """Dependencies not final yet."""
    blocked: tuple[tuple[str, str], ...] = ()
    """(id, status) of dependencies that failed or were aborted."""
    missing: tuple[str, ...] = ()
    """Dependencies with no plan file."""

    @property
    def ready(self) -> bool:
        return not (self.pending or self.blocked or self.missing)

    def reason(self) -> str:
        parts = [f"{d} {s}" for d, s in self.blocked]
        parts += [f"{d} missing" for d in self.missing]
        parts += [f"waiting for {d}" for d in self.pending]
        return ", ".join(parts)


def waiting(after: tuple[str, ...], status_of: Mapping[str, str | None]) -> Waiting:
    """Where the dependencies stand; `status_of` maps an id to its status (None: no file)."""
    pending, blocked, missing = [], [], []
    for dep in after:
        status = status_of.get(dep)
        if status is None:
            missing.append(dep)
        elif status in BLOCKING:
            blocked.append((dep, status))
        elif status != "completed":
            pending.append(dep)
    return Waiting(tuple(pending), tuple(blocked), tuple(missing))


def find_cycle(edges: Mapping[str, tuple[str, ...]], start: str | None = None) -> list[str]:
    """A cycle in the `after` graph as [A, B, ..., A], or [] (one through `start` if given)."""
    color: dict[str, int] = {}
    for root in [start] if start is not None else sorted(edges):
        if color.get(root):
            continue
        path: list[str] = []
        stack = [(root, iter(edges.get(root, ())))]
        color[root] = 1
        path.append(root)
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                color[node] = 2
                continue
            if color.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                if start is None or start in cycle:
                    return cycle
                continue
            if not color.get(nxt):
                color[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(edges.get(nxt, ()))))
    return []


def retry_at(failed_at: datetime, delay: RetryDelay, failures: int, seed: str) -> datetime:
    """The instant a released plan becomes claimable again, to the second (rounded up)."""
    wait = delay.wait(failures, seed)
    at = failed_at + timedelta(seconds=wait)
    if at.microsecond:
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    return at

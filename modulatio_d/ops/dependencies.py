"""`after:` dependencies as people see them: missing plans, cycles, blocked plans.

The daemon's side (claimable only when every dependency is `completed`) is in
daemon/scan.py; the rules are core/schedule.py. Here: the checks `validate`
and `plan approve` make over a project's plans, the words `status` and
`plan show` use for a plan that waits, and `plan unblock`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from modulatio_d.core import markdown, peek, schedule
from modulatio_d.core.errors import BadFile, UsageError
from modulatio_d.core.plan import Plan, parse_plan
from modulatio_d.ops.plan_facts import Facts
from modulatio_d.store.vault import Vault


def after_problems(parsed: dict[tuple[str, str], object], add, error, warning) -> None:
    """`add(path, reason, line, hint, severity)` for each missing dependency (`warning`)
    and cycle (`error`); `parsed`: (project, id) -> the plan's Facts (ops/plan_facts.py),
    True for an ended plan not looked at again, or False for a refused one."""
    for path, reason, line, hint, bad in _after_problems(
            {k: p for k, p in parsed.items() if isinstance(p, Facts)}, set(parsed)):
        add(path, reason, line, hint, error if bad else warning)


def _after_problems(plans: dict[tuple[str, str], Facts], known: set[tuple[str, str]]
                    ) -> Iterator[tuple[Path, str, int | None, str, bool]]:
    told: set[tuple[str, str]] = set()
    for (project, plan_id), plan in sorted(plans.items()):
        line = plan.after_line
        if not plan.final:
            for dep in plan.after:
                if (project, dep) not in known:
                    yield (plan.path, f"after: there is no plan {project}/plans/{dep}.md", line,
                           "the plan waits until it exists; fix the id or create it", False)
        if (project, plan_id) in told or not plan.after:
            continue
        edges = {i: p.after for (pr, i), p in plans.items() if pr == project}
        cycle = schedule.find_cycle(edges, plan_id)
        if cycle:
            told.update((project, i) for i in cycle)
            yield (plan.path, "after: the plans depend on each other in a cycle ("
                   + " -> ".join(cycle) + "), so none of them ever runs", line,
                   "remove one of the links", True)


def project_edges(vault: Vault, project: str) -> dict[str, tuple[str, ...]]:
    """plan id -> its `after`, for every plan of the project that parses."""
    edges: dict[str, tuple[str, ...]] = {}
    for entry in vault.files(project, "plans"):
        path = Path(entry.path)
        try:
            _, text = vault.read(path)
            if "after" not in text:
                continue  # the cheap way past the many plans without dependencies
            edges[path.stem] = parse_plan(markdown.load(path, text), path.stem).schedule.after
        except (BadFile, OSError):
            continue
    return edges


def refuse_cycle(vault: Vault, project: str, plan: Plan) -> None:
    """Raise UsageError when approving `plan` would start a cycle of `after` links."""
    if not plan.schedule.after:
        return
    edges = project_edges(vault, project)
    edges[plan.id] = plan.schedule.after
    cycle = schedule.find_cycle(edges, plan.id)
    if cycle:
        raise UsageError(f"plan {plan.id} is not approved: its after: links make a cycle ("
                         + " -> ".join(cycle) + "), so none of these plans would ever run; "
                         "remove one of the links")


def status_of(vault: Vault, project: str, plan_id: str) -> str | None:
    """A plan's status by a cheap look (None: no such plan)."""
    try:
        return peek.peek_status(vault.read(vault.plan_path(project, plan_id))[1]) or "draft"
    except FileNotFoundError:
        return None
    except (BadFile, OSError):
        return "unreadable"


def waiting(vault: Vault, project: str, plan: Plan) -> schedule.Waiting:
    return schedule.waiting(plan.schedule.after,
                            {d: status_of(vault, project, d) for d in plan.schedule.after})


def why_not_yet(vault: Vault, project: str, plan: Plan, now: datetime) -> str | None:
    """For an approved plan: why no daemon takes it now (blocked, waiting, a time), or None."""
    from modulatio_d.core.times import format_time, parse_time

    if plan.status.value != "approved":
        return None
    if plan.schedule.expires_at is not None and plan.schedule.expires_at <= now \
            and not plan.reflection_log:
        return "expired: the next daemon fails it"
    if plan.schedule.after:
        w = waiting(vault, project, plan)
        if w.blocked:
            return f"blocked: {w.reason()} (plan retry the dependency, or plan unblock)"
        if not w.ready:
            return w.reason()
    retry = plan.retry_wait or {}
    frm = schedule.claimable_from(plan)
    if frm is not None and frm > now:
        if parse_time(retry.get("at")) == frm:
            return f"retry at {format_time(frm)} (step {retry.get('index', 0) + 1}, " \
                   f"{retry.get('failures', 0)} failure(s))"
        return f"not before {format_time(frm)}"
    return None


def unblocked_after(vault: Vault, project: str, plan: Plan) -> list[str]:
    """`after` without the dependencies that failed or were aborted (for `plan unblock`)."""
    w = waiting(vault, project, plan)
    if not w.blocked:
        raise UsageError(f"plan {plan.id} is not blocked: "
                         + (w.reason() or "its dependencies allow it to run"))
    dropped = {d for d, _ in w.blocked}
    return [d for d in plan.schedule.after if d not in dropped]


def check_approve(vault: Vault, plan_id: str) -> None:
    """`plan approve` refuses a plan whose after: links close a cycle."""
    from modulatio_d.store.plan_file import read_plan

    project, path = vault.find("plans", plan_id)
    refuse_cycle(vault, project, read_plan(vault, path).plan)


def unblock(vault: Vault, plan_id: str, events) -> tuple[Plan, list[str]]:
    """`plan unblock`: drop the failed or aborted dependencies from `after` (as a person
    would in an editor; the plan's lock is not needed for a key that is people's)."""
    from modulatio_d.store.plan_file import read_plan, write_as_person

    project, path = vault.find("plans", plan_id)
    plan = read_plan(vault, path).plan
    keep = unblocked_after(vault, project, plan)
    dropped = [d for d in plan.schedule.after if d not in keep]
    _, after = write_as_person(vault, path, {"after": keep or None})
    events("plan_unblocked", project=project, plan=plan_id, dropped=dropped)
    return read_plan(vault, path).plan, dropped

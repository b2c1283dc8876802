"""Make a large vault for the benchmarks: plans in every non-claimable state."""

from __future__ import annotations

import os
from pathlib import Path

from modulatio_d.ops.init import init

_PLAN = """---
id: {id}
title: Benchmark plan {n}   # a comment people wrote
status: {status}      # draft | approved | executing | paused | completed | failed | aborted
priority: {prio}
tags: [bench, "quoted tag", {n}]
sub_objectives:
  - Collect this week's sources
  - objective: Summarize them
    agent: writer
  - title: Build the digest
    run: make digest
    timeout: 10m
    retries: 1
budget: {{tokens: 500000, cost_usd: 5.0, wall_clock: 2h}}
current_index: {index}
reflection_log: []
---
Free text for people, a few lines of it.

- a list item
- another one with `code`
"""

STATES = ("completed", "draft", "paused", "failed", "aborted")


def make_vault(root: Path, plans: int, projects: int = 10) -> Path:
    """A vault of `plans` plan files spread over `projects` projects; none claimable."""
    vault = init(root)
    for n in range(plans):
        project = f"P{n % projects:02d}"
        folder = vault.plans_dir(project)
        folder.mkdir(parents=True, exist_ok=True)
        plan_id = f"{project}-P-{n:05d}"
        status = STATES[n % len(STATES)]
        (folder / f"{plan_id}.md").write_text(_PLAN.format(
            id=plan_id, n=n, status=status, prio=n % 100,
            index=3 if status == "completed" else 0))
    return root


def drop_caches_hint() -> str:
    return "warm page cache (cold = first scan of a new process, files in cache)"


if __name__ == "__main__":
    import sys
    make_vault(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
    print(sys.argv[1], os.listdir(sys.argv[1]))

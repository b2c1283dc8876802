"""Make a large vault for the benchmarks: plans in every non-claimable state."""

from __future__ import annotations

import os
import shutil
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
    folders = [vault.plans_dir(f"P{p:02d}") for p in range(projects)]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    for n in range(plans):
        folder = folders[n % projects]
        plan_id = f"{folder.parent.name}-P-{n:05d}"
        status = STATES[n % len(STATES)]
        fd = os.open(folder / f"{plan_id}.md", flags, 0o644)
        try:
            os.write(fd, _PLAN.format(id=plan_id, n=n, status=status, prio=n % 100,
                                      index=3 if status == "completed" else 0).encode())
        finally:
            os.close(fd)
    return root


def vault_for(plans: int, tmp: Path) -> Path:
    """A vault of `plans` plans (make_vault). With BENCH_VAULT_CACHE set, it is made once
    in that folder (`vault-<plans>`) and reused by every later run and benchmark: 100,000
    plans take a while to write. The benchmarks change no plan in it; a benchmark that
    adds files removes them again (bench_pickup: its PICK project). Else made in `tmp`."""
    cache = os.environ.get("BENCH_VAULT_CACHE")
    if not cache:
        return make_vault(tmp / "vault", plans)
    root = Path(cache) / f"vault-{plans}"
    done = root / ".modulatio" / "bench-vault-complete"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)  # a run stopped half way: make it again
        make_vault(root, plans)
        done.write_text(f"{plans}\n")
    return root


def drop_caches_hint() -> str:
    return "warm page cache (cold = first scan of a new process, files in cache)"


if __name__ == "__main__":
    import sys
    make_vault(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
    print(sys.argv[1], os.listdir(sys.argv[1]))

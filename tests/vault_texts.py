"""Files tests write into a vault by hand: any text at a path (aged on request, for
the daemon's settle time), and a plan's text from its parts."""

from __future__ import annotations

import os
import time
from pathlib import Path


def write(path: Path, text: str, age_s: float = 0.0) -> Path:
    """`text` at `path` (folders made); with `age_s`, its mtime is that many seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))
    return path


def plan_text(plan_id: str, status_: str, steps: str, extra: str = "",
              priority: int = 50) -> str:
    """A plan file: `steps` are the sub_objectives lines, `extra` more frontmatter lines."""
    return (f"---\nid: {plan_id}\ntitle: Plan {plan_id}\nstatus: {status_}\n"
            f"priority: {priority}\nsub_objectives:\n{steps}{extra}current_index: 0\n"
            f"reflection_log: []\n---\nBody of {plan_id}.\n")


# A plan as people write it: comments, blank lines, odd spacing, an unknown key, a
# body without a final newline. Commands must change only the keys they own.
COMMENTED = """\
---
# Research digest: the team edits this in Obsidian and vim.
id: ESS-P-001
title: "Weekly research digest"   # shown in `plan list`
status: {status}      # draft | approved | executing | paused | completed | failed | aborted
priority: 50          # higher runs first

# The steps, in order.
sub_objectives:
  - Collect this week's sources           # text only: run by the default agent
  - objective: Summarize them
    agent: writer                          # an agent named in config
  # the build step may be slow
  - title: 'Build the digest'
    run: make digest                       # shell
    timeout: 10m
    retries: 1
    on_failure: pause                      # pause (default) | abort | continue
budget: {{tokens: 500000, cost_usd: 5.0, wall_clock: 2h}}   # flow map
owner: ana            # an unknown key: kept
current_index: 1      # daemon-owned from here down
reflection_log:
  - {{index: 0, title: Collect, outcome: ok, decision: continue}}
{extra}---

Free text for people.   
  Indented line, trailing spaces.   

No final newline"""


def commented_plan(status: str, extra: str = "") -> str:
    """COMMENTED with this status and `extra` frontmatter lines before the closing ---."""
    return COMMENTED.format(status=status, extra=extra)

"""`modulatio cron add` as documented, run as a real process (every cron command in this
process: tests/unit/test_cron_commands.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from modulatio_d.store import events
from modulatio_d.store.cron_entries import read_entry

SALES = ["cron", "add", "SALES", "Send weekly follow-up to leads from past 7 days",
         "--schedule", "0 6 * * *"]


def modulatio() -> list[str]:
    script = Path(sys.executable).with_name("modulatio")
    return [str(script)] if script.exists() else [sys.executable, "-m", "modulatio_d"]


def test_the_documented_sales_command_works_exactly_as_written(vault):
    env = {k: v for k, v in os.environ.items() if k != "MODULATIO_VAULT"}
    r = subprocess.run(modulatio() + SALES, check=False, cwd=vault.root, env=env,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "SALES-C-001\n", "")
    entry = read_entry(vault, vault.root / "SALES" / "cron" / "SALES-C-001.md")
    assert entry.objective == "Send weekly follow-up to leads from past 7 days"
    assert (entry.expr, entry.enabled, entry.approve, entry.catch_up, entry.overlap) == (
        "0 6 * * *", True, True, "latest", "skip")
    assert entry.created_at is not None and entry.last_fired_for is None
    v = subprocess.run(modulatio() + ["validate"], check=False, cwd=vault.root, env=env,
                       capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stdout
    (added,) = [e for e in events.read(vault.events_path) if e["event"] == "cron_added"]
    assert added["cron"] == "SALES-C-001"

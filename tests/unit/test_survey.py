"""The survey behind `modulatio status`, in this process on vaults written by hand
(the every-state vault made by real daemons is tests/e2e/test_status.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from vault_texts import plan_text, write

from modulatio_d.core.times import format_time
from modulatio_d.ops import status_text, survey
from modulatio_d.ops.init import init

# --- the cost ----------------------------------------------------------------------------------

def test_only_executing_and_a_few_paused_plans_are_parsed(tmp_path, monkeypatch):
    """Never a full parse of every plan: the status line is read with a regex."""
    from modulatio_d.core import plan as plan_mod

    vault = init(tmp_path / "v")
    folder = vault.plans_dir("BIG")
    folder.mkdir(parents=True)
    statuses = ["draft", "approved", "completed", "failed", "aborted", "paused"]
    for n in range(600):
        s = statuses[n % len(statuses)]
        (folder / f"BIG-{n:04d}.md").write_text(plan_text(f"BIG-{n:04d}", s, "  - A step\n"))
    (folder / "BIG-EXEC.md").write_text(plan_text("BIG-EXEC", "executing", "  - Running\n"))
    calls = []
    real = plan_mod.parse_plan
    monkeypatch.setattr(plan_mod, "parse_plan", lambda *a, **k: calls.append(1) or real(*a, **k))
    s = survey.survey(vault, datetime.now(UTC))
    assert s.counts()["by_status"]["paused"] == 100
    assert len(calls) == 1 + survey.PAUSED_DETAIL
    assert sum(p["detail"] for p in s.paused) == survey.PAUSED_DETAIL
    assert [e["id"] for e in s.executing] == ["BIG-EXEC"]


# --- refusals that no longer stand ---------------------------------------------------------------

def test_a_daemon_refusal_counts_only_while_the_file_is_unchanged(tmp_path):
    vault = init(tmp_path / "v")
    bad = write(vault.plans_dir("P") / "P-1.md", "---\nstatus: approved\nx: [\n---\n", 60)
    gone = vault.plans_dir("P") / "P-2.md"
    ts = format_time(datetime.now(UTC) - timedelta(seconds=10))
    lines = [{"ts": ts, "event": "file_refused", "project": "P", "path": "P/plans/P-1.md",
              "line": 3, "reason": "invalid YAML"},
             {"ts": ts, "event": "file_refused", "project": "P", "path": "P/plans/P-2.md",
              "line": 1, "reason": "deleted since"}]
    vault.events_path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"torn')
    s = survey.survey(vault, datetime.now(UTC))
    assert [(r["path"], r["line"], r["source"]) for r in s.refused] == [
        ("P/plans/P-1.md", 3, "daemon")]
    assert not gone.exists()
    bad.write_text(plan_text("P-1", "approved", "  - Fixed\n"))  # a person fixed it
    assert survey.survey(vault, datetime.now(UTC)).refused == []


def test_empty_vault(tmp_path):
    vault = init(tmp_path / "v")
    s = survey.survey(vault, datetime.now(UTC))
    assert s.counts()["total"] == 0 and s.daemons == [] and s.refused == [] and s.cron == []
    text = status_text.render(s)
    assert "daemons: 0 live, 0 stale" in text and "plans: 0" in text


@pytest.mark.parametrize(("seconds", "text"), [(0.25, "0.2s"), (42, "42s"), (725, "12m05s"),
                                               (11040, "3h04m"), (183600, "2d03h"),
                                               (None, "?")])
def test_durations_for_people(seconds, text):
    assert status_text.duration(seconds) == text

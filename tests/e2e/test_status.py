"""`modulatio status` against a real vault in every state, made by real daemons.

The vault (every_state.py, built once per session by the `every_state` fixture):
- SALES, run to the end by `modulatio daemon --once --project SALES`:
  SALES-P-001 completed (its step writes a usage line), SALES-P-002 failed
  (on_failure: abort), SALES-P-003 paused at step 1 with a ticket,
  SALES-P-004 approved but malformed (refused by the daemon), SALES-P-005
  aborted (`plan abort`), SALES-P-006 draft; cron entries SALES-C-001 (fired
  once after an hour of missed minutes: its kickoff completed), SALES-C-002
  (disabled: its times are skipped) and SALES-C-003 (malformed).
- OPS, served by a live `modulatio daemon --project OPS`: OPS-P-001 executing,
  its step waiting for a file, so the daemon and the step's child hold the
  plan's lock; OPS-P-002 approved, waiting behind it.
- LATER, served by nobody: LATER-P-001 approved, LATER-P-002 executing with a
  free lock (an orphan of a dead daemon), LATER-P-003 with an unknown status,
  LATER-P-004 with no frontmatter, a usage file written by hand, cron entry
  LATER-C-001 (06:00 UTC daily, not due yet).
- heartbeats: the live OPS daemon, a dead daemon of this host (stale), a
  fresh one from another host (live by age).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from cli_runner import run_cli
from every_state import HOST
from helpers import modulatio


@pytest.fixture(scope="module")
def snapshot(every_state):
    """`modulatio status --json` of the every-state vault, from a real process."""
    result = modulatio("status", "--json", "--vault", every_state.root)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in rows}


# --- the JSON ------------------------------------------------------------------------------

def test_counts_every_status_by_the_status_line(snapshot):
    c = snapshot["counts"]
    assert c["by_status"] == {"draft": 1, "approved": 3, "executing": 2, "paused": 1,
                              "completed": 2, "failed": 1, "aborted": 1, "invalid": 2}
    assert c["total"] == 13 == len(snapshot["plans"])
    assert c["by_project"]["OPS"] == {"executing": 1, "approved": 1}
    assert c["by_project"]["LATER"] == {"approved": 1, "executing": 1, "invalid": 2}
    statuses = {p["id"]: p["status"] for p in snapshot["plans"]}
    assert statuses["SALES-P-001"] == "completed" and statuses["SALES-P-002"] == "failed"
    assert statuses["SALES-P-004"] == "approved"  # what its status line says; refused below
    kickoffs = [p for p in snapshot["plans"] if p["id"].startswith("SALES-C-001-")]
    assert [k["status"] for k in kickoffs] == ["completed"]


def test_executing_plan_shows_progress_step_and_its_live_holder(snapshot, every_state):
    ops = by_id(snapshot["executing"])["OPS-P-001"]
    assert (ops["done"], ops["total"], ops["step_index"]) == (0, 2, 0)
    assert ops["step_title"] == "Wait for the release file"
    assert ops["held"] is True and ops["orphan"] is False
    assert ops["holder"]["pid"] == every_state.ops_daemon.pid
    assert ops["claim"]["pid"] == every_state.ops_daemon.pid and ops["attempt"] == 1
    since_built = (datetime.now(UTC) - every_state.started).total_seconds()
    assert 0 <= ops["step_running_s"] <= ops["running_s"] <= since_built + 1


def test_executing_plan_without_a_lock_holder_is_an_orphan(snapshot, every_state):
    orphan = by_id(snapshot["executing"])["LATER-P-002"]
    assert orphan["orphan"] is True and orphan["holder"] is None
    assert (orphan["done"], orphan["total"], orphan["step_title"]) == (1, 3, "Two, interrupted")
    assert orphan["attempt"] == 2 and orphan["claim"]["token"] == 3
    # Started 10 minutes (its step 5) before the vault was built, however long ago that was.
    since_built = (datetime.now(UTC) - every_state.started).total_seconds()
    assert 590 <= orphan["running_s"] <= 600 + since_built + 1
    assert 290 <= orphan["step_running_s"] <= 300 + since_built + 1


def test_paused_plan_with_its_ticket(snapshot):
    paused = by_id(snapshot["paused"])["SALES-P-003"]
    assert paused["detail"] is True
    assert (paused["done"], paused["total"], paused["step_title"]) == (1, 2, "Needs a person")
    assert paused["tickets"] == ["SALES-P-003-T-01"]
    assert "exit 4" in paused["last_error"]
    (ticket,) = snapshot["tickets"]
    assert ticket["id"] == "SALES-P-003-T-01" and ticket["plan"] == "SALES-P-003"
    assert ticket["severity"] == "warning" and ticket["decision"] == "pending"


def test_daemons_live_and_stale(snapshot, every_state):
    daemons = {(d["host"], d["pid"]): d for d in snapshot["daemons"]}
    ops = daemons[(HOST, every_state.ops_daemon.pid)]
    assert ops["state"] == "live" and ops["active_plan"] == "OPS-P-001" and ops["step"] == 0
    assert ops["local"] is True and ops["age_s"] < 30 and ops["tick_seconds"] == 0.3
    dead = daemons[(HOST, every_state.stale_pid)]
    assert dead["state"] == "stale" and "process gone" in dead["reason"]
    remote = daemons[("elsewhere", 42)]
    assert remote["state"] == "live" and remote["local"] is False
    assert 3 * 3600 - 60 < remote["uptime_s"] < 3 * 3600 + 600


def test_cron_entries_with_next_fire(snapshot, every_state):
    entries = by_id(snapshot["cron"])
    assert set(entries) == {"SALES-C-001", "SALES-C-002", "LATER-C-001"}
    now = datetime.fromisoformat(snapshot["now"])
    nxt = datetime.fromisoformat(entries["SALES-C-001"]["next_fire"])
    assert now < nxt <= now + timedelta(minutes=1)
    assert entries["SALES-C-001"]["last_fired_for"] is not None
    assert entries["SALES-C-002"]["enabled"] is False
    assert entries["SALES-C-002"]["next_fire"] is None
    daily = entries["LATER-C-001"]
    expected = (now if now.hour < 6 else now + timedelta(days=1)).replace(
        hour=6, minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(daily["next_fire"]) == expected
    assert daily["timezone"] == "UTC" and daily["due_since"] is None


def test_refused_files_from_this_pass_and_from_the_daemons(snapshot):
    refused = {r["path"]: r for r in snapshot["refused"]}
    assert set(refused) == {
        "SALES/plans/SALES-P-004.md", "SALES/cron/SALES-C-003.md",
        "LATER/plans/LATER-P-003.md", "LATER/plans/LATER-P-004.md"}
    broken = refused["SALES/plans/SALES-P-004.md"]
    assert broken["source"] == "daemon" and broken["kind"] == "plan"
    assert broken["line"] is not None and "YAML" in broken["reason"]
    assert "unknown status 'runing'" in refused["LATER/plans/LATER-P-003.md"]["reason"]
    assert refused["LATER/plans/LATER-P-003.md"]["line"] == 4
    assert "no frontmatter" in refused["LATER/plans/LATER-P-004.md"]["reason"]
    assert refused["SALES/cron/SALES-C-003.md"]["kind"] == "cron"


# --- the text --------------------------------------------------------------------------------

def test_plain_text_when_not_a_terminal(every_state):
    result = modulatio("status", "--vault", every_state.root)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "█" not in out and "\x1b" not in out
    assert "daemons: 2 live, 1 stale" in out
    assert "OPS-P-001" in out and "0/2 (0%)" in out and "step 0: Wait for the release file" in out
    assert "ORPHAN" in out and "LATER-P-002" in out
    assert "SALES-P-003-T-01" in out and "open tickets: 1" in out
    assert "SALES/plans/SALES-P-004.md:" in out and "(refused by a daemon)" in out
    assert "LATER-C-001" in out and "disabled" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(every_state):
    result = run_cli("status", cwd=every_state.root, out=_Terminal())
    assert result.code == 0
    line = next(line for line in result.out.splitlines() if "OPS-P-001" in line
                and "[" in line)
    assert "[" + "░" * 20 + "] 0/2" in line

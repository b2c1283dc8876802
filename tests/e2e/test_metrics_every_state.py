"""`modulatio metrics` of the every-state vault (tests/e2e/every_state.py), read by a
real `modulatio metrics` process and checked by the strict parser of tests/prometheus.py.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta

import pytest
from every_state import LATER_USAGE
from helpers import modulatio
from prometheus import parse, sample

from modulatio_d.ops.init import init


@pytest.fixture(scope="module")
def fams(every_state):
    result = modulatio("metrics", "--vault", every_state.root)
    assert result.returncode == 0, result.stderr
    return parse(result.stdout)


def test_every_family_has_help_and_type_and_counters_end_in_total(fams):
    assert len(fams) >= 20
    for f in fams.values():
        assert f.name.startswith("modulatio_") and f.help and f.type in ("gauge", "counter")
        assert f.name.endswith("_total") == (f.type == "counter"), f.name


def test_plans_by_project_and_status(fams, every_state):
    assert sample(fams, "modulatio_plans", project="SALES", status="completed") == 2
    assert sample(fams, "modulatio_plans", project="SALES", status="failed") == 1
    assert sample(fams, "modulatio_plans", project="SALES", status="paused") == 1
    assert sample(fams, "modulatio_plans", project="SALES", status="aborted") == 1
    assert sample(fams, "modulatio_plans", project="SALES", status="draft") == 1
    assert sample(fams, "modulatio_plans", project="SALES", status="approved") == 1
    assert sample(fams, "modulatio_plans", project="OPS", status="executing") == 1
    assert sample(fams, "modulatio_plans", project="OPS", status="approved") == 1
    assert sample(fams, "modulatio_plans", project="LATER", status="invalid") == 2
    assert sample(fams, "modulatio_plans", project="LATER", status="completed") == 0
    assert sum(fams["modulatio_plans"].samples.values()) == 13
    assert sample(fams, "modulatio_plans_orphaned", project="LATER") == 1
    assert sample(fams, "modulatio_plans_orphaned", project="OPS") == 0
    # The step started after the vault was built: it cannot have run longer than that.
    since_built = (datetime.now(UTC) - every_state.started).total_seconds()
    assert 0 <= sample(fams, "modulatio_plan_step_running_seconds", project="OPS",
                       plan="OPS-P-001") <= since_built + 1


def test_steps_run_and_failed_from_the_event_log(fams):
    # SALES-P-001 1 step, -P-002 1 (failed), -P-003 2 (one failed), the cron kickoff 1.
    assert sample(fams, "modulatio_steps_run_total", project="SALES") == 5
    assert sample(fams, "modulatio_steps_failed_total", project="SALES") == 2
    assert sample(fams, "modulatio_steps_run_total", project="OPS") == 0  # still running
    assert sample(fams, "modulatio_steps_failed_total", project="LATER") == 0


def test_usage_tokens_and_cost_per_project(fams):
    # LATER's usage file was written by hand: two good lines and a malformed one.
    assert sample(fams, "modulatio_usage_tokens_total", project="LATER",
                  direction="input") == sum(u["input_tokens"] for u in LATER_USAGE)
    assert sample(fams, "modulatio_usage_tokens_total", project="LATER",
                  direction="output") == sum(u["output_tokens"] for u in LATER_USAGE)
    assert sample(fams, "modulatio_usage_cost_usd_total", project="LATER") == 1.75
    assert sample(fams, "modulatio_usage_calls_total", project="LATER") == 2
    # SALES-P-001's step reported 1000/200/$0.25; the other steps reported nothing
    # (a zero line each) except the kickoff, run by the mock agent.
    assert sample(fams, "modulatio_usage_tokens_total", project="SALES",
                  direction="input") > 1000
    assert sample(fams, "modulatio_usage_cost_usd_total", project="SALES") > 0.25
    assert sample(fams, "modulatio_usage_calls_total", project="SALES") == 5


def test_daemons_and_seconds_since_their_last_tick(fams, every_state):
    assert sample(fams, "modulatio_daemons", state="live") == 2
    assert sample(fams, "modulatio_daemons", state="stale") == 1
    pid = every_state.ops_daemon.pid
    host = os.uname().nodename
    assert sample(fams, "modulatio_daemon_live", host=host, pid=pid) == 1
    assert 0 <= sample(fams, "modulatio_daemon_last_tick_age_seconds", host=host, pid=pid) < 30
    assert sample(fams, "modulatio_daemon_live", host=host, pid=every_state.stale_pid) == 0
    assert 7100 < sample(fams, "modulatio_daemon_last_tick_age_seconds", host=host,
                         pid=every_state.stale_pid) < 8000
    generated = sample(fams, "modulatio_metrics_generated_timestamp_seconds")
    ticked = sample(fams, "modulatio_daemon_last_tick_timestamp_seconds", host=host, pid=pid)
    assert generated - 30 < ticked < generated + 5  # it may tick while metrics read


def test_open_tickets_and_refused_files(fams):
    assert sample(fams, "modulatio_tickets_open", project="SALES", severity="warning") == 1
    assert sample(fams, "modulatio_tickets_open", project="SALES", severity="critical") == 0
    assert sample(fams, "modulatio_refused_files", kind="plan") == 3
    assert sample(fams, "modulatio_refused_files", kind="cron") == 1


def test_cron_fires_misses_skips_and_next_fire(fams, every_state):
    assert sample(fams, "modulatio_cron_fires_total", project="SALES", cron="SALES-C-001") == 1
    # An hour of minutes was due: the latest fired, the others were missed.
    assert 55 <= sample(fams, "modulatio_cron_missed_total", project="SALES",
                        cron="SALES-C-001") <= 61
    assert 55 <= sample(fams, "modulatio_cron_skipped_total", project="SALES",
                        cron="SALES-C-002", reason="disabled") <= 61
    assert sample(fams, "modulatio_cron_fires_total", project="LATER", cron="LATER-C-001") == 0
    nxt = datetime.fromtimestamp(sample(fams, "modulatio_cron_next_fire_timestamp_seconds",
                                        project="LATER", cron="LATER-C-001"), UTC)
    assert (nxt.hour, nxt.minute) == (6, 0)
    assert timedelta(0) < nxt - datetime.now(UTC) <= timedelta(days=1)


def test_output_file_is_written_atomically_for_the_textfile_collector(every_state, tmp_path):
    out = tmp_path / "collector" / "modulatio.prom"
    out.parent.mkdir()
    out.write_text("old content that must be replaced whole\n")
    result = modulatio("metrics", "--vault", every_state.root, "--output", out)
    assert result.returncode == 0 and result.stdout == "", result.stderr
    fams = parse(out.read_text())
    assert "modulatio_plans" in fams
    assert os.listdir(out.parent) == ["modulatio.prom"]  # no temp file left behind
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_a_lone_surrogate_reaches_a_real_stdout_and_file_as_an_escape(tmp_path):
    vault = init(tmp_path / "v")
    with open(vault.events_path, "ab") as f:
        f.write(b'{"ts": "2026-01-01T00:00:00Z", "event": "cron_fired", '
                b'"project": "P", "cron": "c\\udcff"}\n')
    result = modulatio("metrics", "--vault", vault.root)
    assert result.returncode == 0, result.stderr
    assert 'modulatio_cron_fires_total{project="P",cron="c\\\\udcff"} 1' in result.stdout
    out = tmp_path / "m.prom"
    result = modulatio("metrics", "--vault", vault.root, "--output", out)
    assert result.returncode == 0, result.stderr
    assert 'cron="c\\\\udcff"' in out.read_text()

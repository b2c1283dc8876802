"""The daemon's own log (stderr) tells the story: outcomes, step failures and cron skips,
as text, as JSON lines with their fields, and with journald's priority prefixes when
stderr is the stream JOURNAL_STREAM names. Real daemons, real pipes."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from datetime import timedelta

from helpers import PROJECT, PY, events, write_plan

from modulatio_d.core.times import format_time, utcnow


def story_vault(dv) -> None:
    """A plan that completes, one that fails, one that pauses, a cron entry that skips."""
    write_plan(dv, "P-P-001", [{"title": "first", "run": "true"},
                               {"title": "second", "run": "true"}])
    write_plan(dv, "P-P-002", [{"title": "breaks", "run": "exit 5", "on_failure": "abort"}])
    write_plan(dv, "P-P-003", [{"title": "works", "run": "true"},
                               {"title": "needs a fix", "run": "exit 4"}])
    # Due at each of the last three top of the hours, kickoffs drafts that wait for a person: the
    # first fires, the next two are skipped because it is not final (overlap: skip).
    cron_dir = dv.root / PROJECT / "cron"
    cron_dir.mkdir(exist_ok=True)
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    created = format_time(hour - timedelta(hours=2, minutes=30))  # due: 3 top of the hours
    (cron_dir / "P-C-001.md").write_text(
        f"---\nid: P-C-001\nobjective: Hourly report\nschedule: \"0 * * * *\"\n"
        f"timezone: UTC\ncatch_up: all\noverlap: skip\napprove: false\n"
        f"created_at: {created}\n---\n")


def test_json_lines_tell_each_outcome_with_their_fields(dvault, daemons):
    story_vault(dvault)
    d = daemons("--once", "--log-format", "json")
    assert d.wait(60) == 0, d.log()
    lines = d.log().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    told = [r for r in records if "modulatio_event" in r]

    def one(event, **match):
        found = [r for r in told if r["modulatio_event"] == event
                 and all(r.get(k) == v for k, v in match.items())]
        assert len(found) == 1, (event, match, d.log())
        return found[0]

    done = one("status_changed", plan_id="P-P-001")
    assert (done["level"], done["message"]) == ("INFO", "plan P-P-001 completed")
    failed = one("status_changed", plan_id="P-P-002")
    assert failed["level"] == "ERROR"
    assert re.match(r"plan P-P-002 failed: step \d \(breaks\): ", failed["message"])
    assert "exit 5" in failed["message"]
    ended = one("step_ended", plan_id="P-P-002")
    assert (ended["level"], ended["step"], ended["attempt"], ended["project"]) == (
        "ERROR", 1, 1, PROJECT)
    assert "log P/plans/P-P-002.runs/0001-01.log" in ended["message"]
    assert (dvault.root / "P/plans/P-P-002.runs/0001-01.log").exists()
    paused = one("ticket_opened", plan_id="P-P-003")
    assert paused["level"] == "WARNING"
    assert "ticket P-P-003-T-01 " in paused["message"] and "paused: " in paused["message"]
    step2 = one("step_ended", plan_id="P-P-003")  # step 2 (index 1) failed, 1-based here
    assert (step2["step"], step2["attempt"], step2["level"]) == (2, 1, "WARNING")
    assert "step 2 (needs a fix) attempt 1 ended failed (exit 4): pause" in step2["message"]
    started = [r for r in told if r["modulatio_event"] == "step_started"
               and r["plan_id"] == "P-P-001"]
    assert [(r["step"], r["attempt"]) for r in started] == [(1, 1), (2, 1)]
    skips = [r for r in told if r["modulatio_event"] == "cron_skipped"]
    assert len(skips) == 2 and all(r["level"] == "INFO" for r in skips), d.log()
    (fired,) = [r for r in told if r["modulatio_event"] == "cron_fired"]
    assert all(f"{fired['plan_id']} is still draft (overlap: skip)" in r["message"]
               for r in skips)
    # the log and events.jsonl tell the same story: each told event is in the audit log
    assert len(events(dvault, "cron_skipped", reason="overlap")) == 2
    assert len(events(dvault, "step_started")) == len(
        [r for r in records if r.get("modulatio_event") == "step_started"]) == 5


def test_text_log_says_completed_failed_paused_and_skipped(dvault, daemons):
    story_vault(dvault)
    d = daemons("--once")
    assert d.wait(60) == 0, d.log()
    log = d.log()
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    assert re.search(stamp + r"INFO modulatio.story: plan P-P-001 completed$", log, re.M), log
    assert re.search(stamp + r"ERROR modulatio.story: plan P-P-002 failed: step \d \(breaks\)",
                     log, re.M), log
    assert re.search(stamp + r"WARNING modulatio.story: plan P-P-003 paused: .*; ticket "
                     r"P-P-003-T-01 \(warning\) waits for a person$", log, re.M), log
    assert len(re.findall(stamp + r"INFO modulatio.story: cron P-C-001 skipped its fire",
                          log, re.M)) == 2, log
    assert "<6>" not in log  # not the journal: no priority prefixes


def read_until_eof(fd: int, timeout: float) -> bytes:
    """Everything written to the pipe until every writer closed it, within `timeout` s."""
    deadline = time.monotonic() + timeout
    out = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the daemon kept its stderr open past {timeout}s: {out.decode()}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return out
            out += chunk


def test_under_journald_lines_carry_priorities_and_no_timestamp(dvault):
    story_vault(dvault)
    r, w = os.pipe()
    st = os.fstat(w)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODULATIO_")}
    env["MODULATIO_ALLOW_ROOT"] = "1"  # CI runs the tests as root
    env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    proc = subprocess.Popen([PY, "-m", "modulatio_d", "daemon", "--vault", str(dvault.root),
                             "--tick-seconds", "0.5", "--once"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=w, env=env,
                            start_new_session=True)
    os.close(w)
    try:
        log = read_until_eof(r, 60).decode()
    finally:
        os.close(r)
        if proc.poll() is None:
            proc.kill()
    assert proc.wait(10) == 0, log
    lines = log.splitlines()
    assert lines and all(re.match(r"<[2-7]>[A-Z]+ modulatio[.\w]*: ", line) for line in lines), log
    assert "<6>INFO modulatio.story: plan P-P-001 completed" in lines
    assert any(line.startswith("<3>ERROR modulatio.story: plan P-P-002 failed: ")
               for line in lines), log
    assert any(line.startswith("<4>WARNING modulatio.story: plan P-P-003 paused: ")
               for line in lines), log
    assert not re.search(r"\d\d:\d\d:\d\d,\d{3}", log)  # the journal stamps each line


def test_a_journal_stream_that_is_not_stderr_changes_nothing(dvault, daemons):
    """JOURNAL_STREAM inherited by a daemon whose stderr goes to a file: timestamps stay."""
    write_plan(dvault, "P-P-001", [{"title": "first", "run": "true"}])
    d = daemons("--once", env={"JOURNAL_STREAM": "1:1"})
    assert d.wait(60) == 0, d.log()
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO modulatio.story: plan "
                     r"P-P-001 completed$", d.log(), re.M), d.log()

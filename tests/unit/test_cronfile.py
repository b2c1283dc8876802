"""Cron entry files and CronFirer.fire_due, with `now` passed in (no sleeping, no clock)."""

from __future__ import annotations

import difflib
import fcntl
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from modulatio_d.core.errors import BadFile, UsageError
from modulatio_d.core.plan import PlanStatus, StepKind
from modulatio_d.daemon import cron_firing
from modulatio_d.daemon.cron_firing import CronFirer
from modulatio_d.ops.cron import add_entry, remove, set_enabled
from modulatio_d.ops.validate import validate
from modulatio_d.store import events
from modulatio_d.store.cron_entries import Overlap, read_entry
from modulatio_d.store.events import EventLog
from modulatio_d.store.plan_file import read_plan

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2025, 1, 1, 0, 30, tzinfo=UTC)


def at(hour, minute=0, second=0, day=1):
    return datetime(2025, 1, day, hour, minute, second, tzinfo=UTC)


def entry_text(keys: str, body: str = "") -> str:
    return "---\n" + keys.strip("\n") + "\n---\n" + body


def write_entry(vault, cron_id="SALES-C-001", project="SALES", extra="", body="",
                schedule='"0 * * * *"', created="2025-01-01T00:30:00Z", timezone="UTC",
                objective="Send the follow-up") -> Path:
    lines = [f"id: {cron_id}", f"objective: {objective}", f"schedule: {schedule}"]
    if timezone:
        lines.append(f"timezone: {timezone}")
    if created:
        lines.append(f"created_at: {created}")
    text = entry_text("\n".join(lines) + "\n" + extra, body)
    path = vault.cron_dir(project) / f"{cron_id}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_plan(vault, plan_id, text, project="SALES") -> Path:
    path = vault.plan_path(project, plan_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def firer(vault, **kw) -> CronFirer:
    kw.setdefault("host_zone", UTC)
    kw.setdefault("settle_s", 0)
    return CronFirer(vault, EventLog(vault.events_path), **kw)


def log_of(vault, *names):
    return [e for e in events.read(vault.events_path) if not names or e["event"] in names]


def last_fired_line(path: Path) -> str:
    return next(line for line in path.read_text().splitlines()
                if line.startswith("last_fired_for"))


def kickoff(vault, plan_id, project="SALES"):
    return read_plan(vault, vault.plan_path(project, plan_id)).plan


def kickoffs(vault, project="SALES") -> list[str]:
    return sorted(e.name[:-3] for e in vault.files(project, "plans") if "-C-" in e.name)


# --- reading ----------------------------------------------------------------------


def test_a_full_entry_reads_back(vault):
    path = write_entry(vault, extra=(
        "steps:\n  - make report\n  - [python3, send.py, --all]\n"
        "enabled: false\ncatch_up: all\noverlap: allow\napprove: false\n"
        'last_fired_for: "2025-01-01T01:00:00+00:00"\nx-owner: ana\n'), body="\nNotes.\n")
    e = read_entry(vault, path)
    assert (e.id, e.project, e.objective, e.schedule, e.expr, e.timezone) == (
        "SALES-C-001", "SALES", "Send the follow-up", "0 * * * *", "0 * * * *", "UTC")
    assert e.steps == ("make report", ("python3", "send.py", "--all"))
    assert (e.enabled, e.catch_up, e.overlap, e.approve) == (False, "all", Overlap.ALLOW, False)
    assert e.created_at == T0 and e.last_fired_for == at(1)
    assert e.body == "\nNotes.\n" and e.template is None


def test_defaults_of_a_minimal_hand_written_entry(vault):
    path = vault.cron_dir("SALES") / "daily.md"
    path.parent.mkdir(parents=True)
    path.write_text(entry_text("objective: Daily digest\nschedule: '@daily'"))
    e = read_entry(vault, path)
    assert e.id == "daily" and e.expr == "0 0 * * *" and e.timezone is None
    assert (e.enabled, e.approve, e.catch_up, e.overlap) == (True, True, "latest", "skip")
    assert e.steps == () and e.created_at is None and e.last_fired_for is None


BAD = [
    # (extra lines or replaced key, expected reason, key whose line is named)
    ('schedule: "0 25 * * *"', (r'schedule "0 25 \* \* \*" is not a valid cron expression: '
                                r"hour 25 is out of range 0-23"), "schedule"),
    ('schedule: "0 0 * * * *"', "has 6 fields: seconds and years are not supported", "schedule"),
    ("schedule: 5", "schedule 5 must be a text of 5 fields", "schedule"),
    ("schedule: null", "schedule is missing", "schedule"),
    ("timezone: Europe/Berln",
     'timezone: unknown time zone "Europe/Berln": did you mean "Europe/Berlin"', "timezone"),
    ("timezone: 1", "timezone 1 must be an IANA name", "timezone"),
    ("id: SALES-C-002", "id 'SALES-C-002' differs from the file name 'SALES-C-001'", "id"),
    ('id: "a b"', "id 'a b' is not a valid cron id", "id"),
    ("objective: ''", "objective must be a non-empty text", "objective"),
    ("steps: make report", "steps must be a list of commands", "steps"),
    ("steps: []", "steps must be a list of commands", "steps"),
    ("steps:\n  - ok\n  - {run: x}", "step 2 must be a command: .* not a mapping", "steps+2"),
    ("steps:\n  - ''", "step 1 must be a command", "steps+1"),
    ("template: ../x", "template '../x' is not a plan id", "template"),
    ("steps: [a]\ntemplate: SALES-P-001", "steps and template are both given", "template"),
    ("catch_up: newest", "catch_up 'newest' is not one of latest, all, skip", "catch_up"),
    ("overlap: never", "overlap 'never' is not one of skip, allow", "overlap"),
    ("enabled: yes", "enabled 'yes' must be true or false", "enabled"),
    ("approve: 1", "approve 1 must be true or false", "approve"),
    ("created_at: soon", "created_at 'soon' is not a time", "created_at"),
    ("last_fired_for: yesterday", "last_fired_for 'yesterday' is not a time", "last_fired_for"),
    ("last_fired_for: 2025-13-01", "invalid YAML: month must be in 1..12", "last_fired_for"),
    ("catchup: all", "unknown key 'catchup' .*did you mean catch_up", "catchup"),
]


def replace_key(text: str, line: str) -> str:
    key = line.split(":", 1)[0]
    lines = text.splitlines(keepends=True)
    for i, old in enumerate(lines):
        if old.startswith(key + ":"):
            lines[i] = line + "\n"
            return "".join(lines)
    return text.replace("\n---\n", "\n" + line + "\n---\n", 1)


@pytest.mark.parametrize(("line", "reason", "key"), BAD, ids=[b[0] for b in BAD])
def test_every_bad_field_is_a_bad_file_naming_its_line(vault, line, reason, key):
    path = write_entry(vault)
    path.write_text(replace_key(path.read_text(), line))
    before = path.read_bytes()
    with pytest.raises(BadFile) as info:
        read_entry(vault, path)
    err = info.value
    assert err.path == path
    assert re.search(reason, str(err)), str(err)
    name, _, offset = key.partition("+")
    lines = path.read_text().splitlines()
    key_line = next(i + 1 for i, text in enumerate(lines) if text.startswith(name + ":"))
    assert err.line == key_line + int(offset or 0)
    assert str(err).startswith(f"{path}:{err.line}: ")
    # The daemon skips it, reports it, and never writes it.
    f = firer(vault)
    assert f.fire_due("SALES", at(5)) == []
    assert path.read_bytes() == before
    assert [p.path for p in validate(vault)] == [path]
    assert len(log_of(vault, "file_refused")) == 1


def test_no_frontmatter_and_bad_yaml_are_bad_files(vault):
    path = write_entry(vault)
    path.write_text("objective: x\n")
    with pytest.raises(BadFile, match="no frontmatter"):
        read_entry(vault, path)
    path.write_text(entry_text("schedule: */5 * * * *\nobjective: x"))
    with pytest.raises(BadFile, match="invalid YAML|anchors and aliases"):
        read_entry(vault, path)


def test_a_missing_or_broken_template_is_reported_by_read_entry(vault):
    path = write_entry(vault, extra="template: SALES-P-001\n")
    with pytest.raises(BadFile, match=r"template 'SALES-P-001': there is no plan "
                                      r"SALES/plans/SALES-P-001.md") as info:
        read_entry(vault, path)
    assert info.value.line == 6
    write_plan(vault, "SALES-P-001", entry_text("title: t\nsub_objectives: 3"))
    with pytest.raises(BadFile, match="template 'SALES-P-001' is not a valid plan: .*"
                                      "sub_objectives is not a list"):
        read_entry(vault, path)


# --- firing --------------------------------------------------------------------------


def test_a_due_time_fires_one_approved_kickoff_and_advances_only_last_fired_for(vault):
    path = write_entry(vault, extra="# daemon's\nlast_fired_for: null  # kept\n",
                       body="\nCall the leads from the sheet.\n")
    before = path.read_text()
    now = at(1, 0, 10)
    assert firer(vault).fire_due("SALES", now) == ["SALES-C-001-20250101T0100Z"]
    plan = kickoff(vault, "SALES-C-001-20250101T0100Z")
    assert plan.status is PlanStatus.APPROVED and plan.approved_at == now
    assert plan.title == "Send the follow-up" and plan.current_index == 0
    assert plan.data["cron"] == "SALES-C-001"
    assert plan.data["scheduled_for"] == "2025-01-01T01:00:00+00:00"
    assert [(s.kind, s.agent, s.objective) for s in plan.sub_objectives] == [
        (StepKind.AGENT, "default", "Send the follow-up")]
    assert plan.path.read_text().endswith("---\n\nCall the leads from the sheet.\n")
    after = path.read_text()
    diff = [d for d in difflib.ndiff(before.splitlines(), after.splitlines()) if d[0] in "+-"]
    assert diff == ["- last_fired_for: null  # kept",
                    '+ last_fired_for: "2025-01-01T01:00:00+00:00"  # kept']
    (fired,) = log_of(vault, "cron_fired")
    assert fired.items() >= {"project": "SALES", "cron": "SALES-C-001",
                          "plan": "SALES-C-001-20250101T0100Z",
                          "scheduled_for": "2025-01-01T01:00:00+00:00"}.items()
    # The same tick again, or a later one before the next time: nothing.
    f = firer(vault)
    assert f.fire_due("SALES", now) == [] and f.fire_due("SALES", at(1, 59)) == []
    assert path.read_text() == after


def test_nothing_is_due_before_the_first_time_after_created_at(vault):
    path = write_entry(vault, created="2025-01-01T01:00:00Z")
    before = path.read_bytes()
    assert firer(vault).fire_due("SALES", at(1, 0)) == []  # created_at is exclusive
    assert path.read_bytes() == before and kickoffs(vault) == []


def test_catch_up_latest_fires_the_most_recent_and_logs_the_missed(vault):
    path = write_entry(vault)
    assert firer(vault).fire_due("SALES", at(5, 10)) == ["SALES-C-001-20250101T0500Z"]
    (missed,) = log_of(vault, "cron_missed")
    assert missed["catch_up"] == "latest" and missed["count"] == 4
    assert missed["listed"] == [f"2025-01-01T0{h}:00:00+00:00" for h in (1, 2, 3, 4)]
    assert last_fired_line(path) == 'last_fired_for: "2025-01-01T05:00:00+00:00"'


def test_catch_up_all_with_overlap_allow_fires_every_missed_time(vault):
    write_entry(vault, extra="catch_up: all\noverlap: allow\n")
    got = firer(vault).fire_due("SALES", at(5, 10))
    assert got == [f"SALES-C-001-20250101T0{h}00Z" for h in (1, 2, 3, 4, 5)]
    assert kickoffs(vault) == got and log_of(vault, "cron_missed", "cron_skipped") == []


def test_catch_up_all_with_overlap_skip_fires_the_first_and_skips_the_rest(vault):
    path = write_entry(vault, extra="catch_up: all\n")
    assert firer(vault).fire_due("SALES", at(5, 10)) == ["SALES-C-001-20250101T0100Z"]
    skipped = log_of(vault, "cron_skipped")
    assert [e["scheduled_for"][11:16] for e in skipped] == ["02:00", "03:00", "04:00", "05:00"]
    assert {(e["reason"], e["blocked_by"], e["blocked_status"]) for e in skipped} == {
        ("overlap", "SALES-C-001-20250101T0100Z", "approved")}
    assert last_fired_line(path) == 'last_fired_for: "2025-01-01T05:00:00+00:00"'


def test_catch_up_skip_fires_only_an_on_time_latest(vault):
    path = write_entry(vault, extra="catch_up: skip\n")
    assert firer(vault).fire_due("SALES", at(5, 10)) == []  # 10 minutes late: missed
    (missed,) = log_of(vault, "cron_missed")
    assert missed["count"] == 5 and missed["catch_up"] == "skip"
    assert last_fired_line(path) == 'last_fired_for: "2025-01-01T05:00:00+00:00"'
    assert firer(vault).fire_due("SALES", at(6, 0, 30)) == ["SALES-C-001-20250101T0600Z"]


def set_status(vault, plan_id, status):
    path = vault.plan_path("SALES", plan_id)
    path.write_text(re.sub(r"(?m)^status: \w+", f"status: {status}", path.read_text()))


@pytest.mark.parametrize("final", ["completed", "failed", "aborted"])
def test_overlap_skip_waits_for_the_earlier_kickoff_to_be_final(vault, final):
    path = write_entry(vault)
    f = firer(vault)
    assert f.fire_due("SALES", at(1)) == ["SALES-C-001-20250101T0100Z"]
    assert f.fire_due("SALES", at(2)) == []  # the 01:00 kickoff has not run yet
    (skip,) = log_of(vault, "cron_skipped")
    assert skip["reason"] == "overlap" and skip["scheduled_for"] == "2025-01-01T02:00:00+00:00"
    assert last_fired_line(path) == 'last_fired_for: "2025-01-01T02:00:00+00:00"'
    set_status(vault, "SALES-C-001-20250101T0100Z", "paused")
    assert f.fire_due("SALES", at(3)) == []  # paused is not final either
    set_status(vault, "SALES-C-001-20250101T0100Z", final)
    assert f.fire_due("SALES", at(4)) == ["SALES-C-001-20250101T0400Z"]


def test_overlap_ignores_plans_of_other_entries_with_a_similar_id(vault):
    write_entry(vault)
    write_plan(vault, "SALES-C-001-2-20250101T0000Z", entry_text(
        "status: approved\nsub_objectives: [x]"))
    write_plan(vault, "SALES-C-0011-20250101T0000Z", entry_text(
        "status: approved\nsub_objectives: [x]"))
    assert firer(vault).fire_due("SALES", at(1)) == ["SALES-C-001-20250101T0100Z"]


def test_overlap_allow_fires_while_an_earlier_kickoff_runs(vault):
    write_entry(vault, extra="overlap: allow\n")
    f = firer(vault)
    assert f.fire_due("SALES", at(1)) == ["SALES-C-001-20250101T0100Z"]
    assert f.fire_due("SALES", at(2)) == ["SALES-C-001-20250101T0200Z"]


def test_steps_become_shell_sub_objectives(vault):
    write_entry(vault, extra="steps:\n  - make report > out.txt\n  - [python3, -c, 'print(1)']\n")
    (kid,) = firer(vault).fire_due("SALES", at(1))
    subs = kickoff(vault, kid).sub_objectives
    assert [(s.kind, s.run) for s in subs] == [
        (StepKind.RUN, "make report > out.txt"), (StepKind.RUN, ("python3", "-c", "print(1)"))]


def test_a_template_plans_sub_objectives_and_budget_are_copied(vault):
    write_plan(vault, "SALES-P-001", """\
---
id: SALES-P-001
title: Follow-up template
status: draft
priority: 70
budget: {tokens: 1000, wall_clock: 2h}
sub_objectives:
  - Collect the leads of the week      # a comment
  - objective: "Write: the mails"
    agent: writer
  - title: Send
    run: [python3, send.py, "--count", 7]
    timeout: 10m
    retries: 2
    on_failure: abort
    env: {MODE: "1"}
---
The template's body is not copied.
""")
    write_entry(vault, extra="template: SALES-P-001\n", body="\nEntry body.\n")
    (kid,) = firer(vault).fire_due("SALES", at(1))
    plan = kickoff(vault, kid)
    template = read_plan(vault, vault.plan_path("SALES", "SALES-P-001")).plan
    strip = [s.__dict__ for s in template.sub_objectives]
    assert [s.__dict__ for s in plan.sub_objectives] == strip
    assert plan.priority == 70 and plan.budget == template.budget
    assert plan.status is PlanStatus.APPROVED and plan.title == "Send the follow-up"
    assert plan.path.read_text().endswith("---\n\nEntry body.\n")


def test_approve_false_makes_draft_kickoffs(vault):
    write_entry(vault, extra="approve: false\n")
    (kid,) = firer(vault).fire_due("SALES", at(1))
    plan = kickoff(vault, kid)
    assert plan.status is PlanStatus.DRAFT and plan.approved_at is None
    assert "approved_at" not in plan.data


def test_a_disabled_entry_fires_nothing_and_passes_its_times_over(vault):
    path = write_entry(vault, extra="enabled: false\n")
    f = firer(vault)
    assert f.fire_due("SALES", at(3, 5)) == []
    (skip,) = log_of(vault, "cron_skipped")
    assert skip["reason"] == "disabled" and skip["count"] == 3
    assert last_fired_line(path) == 'last_fired_for: "2025-01-01T03:00:00+00:00"'
    path.write_text(path.read_text().replace("enabled: false", "enabled: true"))
    assert f.fire_due("SALES", at(3, 30)) == []  # the disabled period never fires
    assert f.fire_due("SALES", at(4)) == ["SALES-C-001-20250101T0400Z"]


def test_an_existing_kickoff_means_already_fired(vault):
    # What a daemon killed before writing last_fired_for leaves behind.
    path = write_entry(vault)
    first = firer(vault)
    first._advance = lambda *a: None
    assert first.fire_due("SALES", at(1)) == ["SALES-C-001-20250101T0100Z"]
    plan_file = vault.plan_path("SALES", "SALES-C-001-20250101T0100Z")
    made = plan_file.read_bytes()
    assert "last_fired_for" not in path.read_text()
    assert firer(vault).fire_due("SALES", at(1, 0, 40)) == []
    assert plan_file.read_bytes() == made
    assert last_fired_line(path) == 'last_fired_for: "2025-01-01T01:00:00+00:00"'
    assert len(log_of(vault, "cron_fired")) == 1 and log_of(vault, "cron_skipped") == []


def test_spring_forward_fires_at_the_jump_in_the_entrys_zone(vault):
    path = write_entry(vault, schedule='"30 2 * * *"', timezone="Europe/Berlin",
                       created="2025-03-29T12:00:00+01:00")
    now = datetime(2025, 3, 30, 3, 0, 30, tzinfo=BERLIN)
    assert firer(vault).fire_due("SALES", now) == ["SALES-C-001-20250330T0100Z"]
    assert kickoff(vault, "SALES-C-001-20250330T0100Z").data["scheduled_for"] == \
        "2025-03-30T03:00:00+02:00"
    assert last_fired_line(path) == 'last_fired_for: "2025-03-30T03:00:00+02:00"'


def test_fall_back_fires_the_repeated_time_once(vault):
    write_entry(vault, schedule='"30 2 * * *"', timezone="Europe/Berlin",
                created="2025-10-25T12:00:00Z", extra="catch_up: all\n")
    f = firer(vault)
    got = []
    for minutes in range(0, 4 * 60, 15):  # 00:00Z to 04:00Z: both 02:30 pass
        got += f.fire_due("SALES", datetime(2025, 10, 26, tzinfo=UTC) + timedelta(minutes=minutes))
    assert got == ["SALES-C-001-20251026T0030Z"]


def test_zone_comes_from_the_entry_else_the_vault_config_else_the_host(vault):
    write_entry(vault, schedule='"0 6 * * *"', timezone=None, created="2025-01-01T00:00:00Z",
                extra="overlap: allow\n")
    vault.config_path.write_text("timezone: America/New_York\n")
    assert firer(vault).fire_due("SALES", at(11)) == ["SALES-C-001-20250101T1100Z"]
    vault.config_path.write_text("agents: {}\n")
    assert firer(vault, host_zone=BERLIN).fire_due("SALES", at(5, day=2)) == [
        "SALES-C-001-20250102T0500Z"]


def test_a_bad_vault_zone_holds_only_entries_without_their_own(vault):
    write_entry(vault, timezone=None)
    write_entry(vault, cron_id="SALES-C-002", extra="overlap: allow\n")
    vault.config_path.write_text("timezone: Mars/Olympus\n")
    f = firer(vault)
    assert f.fire_due("SALES", at(1)) == ["SALES-C-002-20250101T0100Z"]
    assert f.fire_due("SALES", at(2)) == ["SALES-C-002-20250101T0200Z"]
    (refused,) = log_of(vault, "file_refused")
    assert refused["kind"] == "config" and "Mars/Olympus" in refused["reason"]


def test_a_malformed_entry_is_logged_once_per_version_and_fires_once_fixed(vault):
    path = write_entry(vault, extra="catch_up: newest\n")
    f = firer(vault)
    for hour in (1, 2, 3):
        assert f.fire_due("SALES", at(hour)) == []
    (refused,) = log_of(vault, "file_refused")
    want = {"kind": "cron", "path": "SALES/cron/SALES-C-001.md", "line": 7}
    assert refused.items() >= want.items()
    assert str(path) in f.refused
    path.write_text(path.read_text().replace("newest", "never"))
    assert f.fire_due("SALES", at(3, 30)) == []
    assert len(log_of(vault, "file_refused")) == 2
    path.write_text(path.read_text().replace("catch_up: never", "catch_up: latest"))
    assert f.fire_due("SALES", at(4)) == ["SALES-C-001-20250101T0400Z"]
    assert f.refused == {}


def test_a_freshly_saved_bad_file_is_not_judged_until_it_settles(vault):
    path = write_entry(vault, extra="catch_up: newest\n")
    f = firer(vault, settle_s=60)
    assert f.fire_due("SALES", at(1)) == []
    assert log_of(vault, "file_refused") == []  # an editor may be half way through
    old = time.time() - 120
    os.utime(path, (old, old))
    assert f.fire_due("SALES", at(1)) == []
    assert len(log_of(vault, "file_refused")) == 1


def test_the_settle_time_of_a_bad_file_is_measured_on_the_injected_clock(vault):
    path = write_entry(vault, extra="catch_up: newest\n")
    saved = at(1).timestamp()
    os.utime(path, (saved, saved))
    wall = [at(1, 0, 1)]  # the default settle time: SETTLE_S, 2 s
    f = CronFirer(vault, EventLog(vault.events_path), clock=lambda: wall[0])
    assert f.fire_due("SALES", at(1)) == []
    assert log_of(vault, "file_refused") == []  # saved 1 s ago: maybe half written
    wall[0] = at(1, 0, 2)
    assert f.fire_due("SALES", at(1)) == []
    assert len(log_of(vault, "file_refused")) == 1


def test_a_missing_template_holds_the_entry_until_it_exists(vault):
    path = write_entry(vault, extra="template: SALES-P-001\n")
    f = firer(vault)
    assert f.fire_due("SALES", at(1)) == [] and f.fire_due("SALES", at(1, 5)) == []
    (refused,) = log_of(vault, "file_refused")
    assert "there is no plan SALES/plans/SALES-P-001.md" in refused["reason"]
    assert "last_fired_for" not in path.read_text()
    write_plan(vault, "SALES-P-001", entry_text("status: draft\nsub_objectives: [a, b]"))
    assert f.fire_due("SALES", at(1, 10)) == ["SALES-C-001-20250101T0100Z"]
    assert len(kickoff(vault, "SALES-C-001-20250101T0100Z").sub_objectives) == 2


def test_a_busy_lock_means_another_daemon_fires_it(vault):
    path = write_entry(vault)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert firer(vault).fire_due("SALES", at(1)) == []
    finally:
        os.close(fd)
    assert firer(vault).fire_due("SALES", at(1)) == ["SALES-C-001-20250101T0100Z"]
    assert path.with_suffix(".lock").exists()  # never deleted


def test_an_idle_tick_reads_no_file(vault, monkeypatch):
    for n in range(1, 21):
        write_entry(vault, cron_id=f"SALES-C-{n:03d}", schedule='"0 6 * * *"')
    f = firer(vault)
    assert f.fire_due("SALES", at(2)) == []
    reads = []
    real = type(vault).read
    monkeypatch.setattr(type(vault), "read", lambda self, p: reads.append(p) or real(self, p))
    assert f.fire_due("SALES", at(3)) == [] and reads == []
    assert len(f.fire_due("SALES", at(6))) == 20  # due: each is locked and read again
    assert len(reads) == 20  # each read once, under its lock


def test_the_advance_keeps_a_persons_save_and_never_writes_a_malformed_one(vault):
    path = write_entry(vault, body="\nold body\n")
    f = firer(vault)
    snap, _ = vault.read(path)
    path.write_text(path.read_text().replace("old body", "new body"))  # an editor saved
    f._advance(path, snap, "2025-01-01T01:00:00+00:00")
    assert path.read_text().endswith('last_fired_for: "2025-01-01T01:00:00+00:00"\n---\n'
                                     "\nnew body\n")
    snap, _ = vault.read(path)
    path.write_text(path.read_text().replace("schedule:", "schedule: [", 1))
    broken = path.read_bytes()
    with pytest.raises(BadFile):
        f._advance(path, snap, "2025-01-01T02:00:00+00:00")
    assert path.read_bytes() == broken


def test_kickoff_text_is_a_plan_file_like_plan_new_writes(vault):
    path = write_entry(vault, body="\nBody line.\n")
    entry = read_entry(vault, path)
    text = cron_firing.kickoff_text(entry, "SALES-C-001-20250101T0100Z",
                                 "2025-01-01T01:00:00+00:00",
                                 {"sub_objectives": ["Send the follow-up"]}, at(1, 0, 5))
    assert text == """\
---
id: SALES-C-001-20250101T0100Z
title: Send the follow-up
status: approved
priority: 50
cron: SALES-C-001
scheduled_for: "2025-01-01T01:00:00+00:00"
created_at: 2025-01-01T01:00:05Z
approved_at: 2025-01-01T01:00:05Z
sub_objectives:
  - Send the follow-up
current_index: 0
reflection_log: []
---

Body line.
"""


# --- add, remove, enable --------------------------------------------------------------


def test_add_numbers_entries_and_never_reuses_a_removed_ones_id(vault):
    now = at(0)
    ids = [add_entry(vault, "SALES", f"job {n}", "@daily", now, timezone="UTC").id
           for n in range(2)]
    assert ids == ["SALES-C-001", "SALES-C-002"]
    remove(vault, "SALES-C-002")
    assert vault.cron_dir("SALES").joinpath("SALES-C-002.lock").exists()  # the tombstone
    assert add_entry(vault, "SALES", "job", "@daily", now, timezone="UTC").id == "SALES-C-003"
    # A kickoff plan whose entry is gone (lock and all) still holds its number.
    write_plan(vault, "SALES-C-007-20250101T0000Z", entry_text("sub_objectives: [x]"))
    assert add_entry(vault, "SALES", "job", "@daily", now, timezone="UTC").id == "SALES-C-008"
    assert add_entry(vault, "OPS", "job", "@daily", now, timezone="UTC").id == "OPS-C-001"


def test_add_writes_an_entry_that_reads_back(vault):
    e = add_entry(vault, "SALES", "Send it", "0 6 * * 1-5", at(0), timezone="Europe/Berlin",
                  steps=["make a", "make b"], catch_up="all", overlap="allow", approve=False)
    assert e.path.read_text() == """\
---
id: SALES-C-001
objective: Send it
schedule: "0 6 * * 1-5"
timezone: Europe/Berlin
steps:
  - make a
  - make b
enabled: true
catch_up: all
overlap: allow
approve: false
created_at: 2025-01-01T00:00:00Z
# written by the daemons: the latest scheduled time fired or passed over
last_fired_for: null
---
"""
    assert read_entry(vault, e.path) == e


def test_add_pins_the_vault_zone_else_the_hosts(vault):
    e = add_entry(vault, "SALES", "x", "@daily", at(0), host_zone=ZoneInfo("Asia/Tokyo"))
    assert e.timezone == "Asia/Tokyo"
    vault.config_path.write_text("timezone: America/New_York\n")
    e = add_entry(vault, "SALES", "x", "@daily", at(0), host_zone=ZoneInfo("Asia/Tokyo"))
    assert e.timezone == "America/New_York"
    vault.config_path.write_text("")
    e = add_entry(vault, "SALES", "x", "@daily", at(0), host_zone=UTC)  # no IANA name
    assert e.timezone is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"schedule": "0 25 * * *"}, r"--schedule: schedule \"0 25"),
    ({"timezone": "Europe/Berln"}, r"--timezone: unknown time zone \"Europe/Berln\""),
    ({"steps": ["a"], "template": "SALES-P-001"}, "give --step or --template, not both"),
    ({"template": "SALES-P-009"}, "--template: there is no plan SALES/plans/SALES-P-009.md"),
    ({"catch_up": "newest"}, "--catch-up: 'newest' is not one of latest, all, skip"),
    ({"overlap": "never"}, "--overlap: 'never' is not one of skip, allow"),
    ({"objective": "  "}, "the objective is empty"),
    ({"project": "../x"}, "project code '../x' is not a valid name"),
])
def test_add_refuses_bad_arguments_and_writes_nothing(vault, kwargs, message):
    args = {"project": "SALES", "objective": "x", "schedule": "@daily", "now": at(0),
            "timezone": "UTC", **kwargs}
    with pytest.raises(UsageError, match=message):
        add_entry(vault, **args)
    assert not vault.root.joinpath("SALES").exists()


def test_set_enabled_rewrites_only_the_enabled_line(vault):
    path = write_entry(vault, extra="# on or off\nenabled: true   # people flip this\n")
    before = path.read_text()
    entry, changed = set_enabled(vault, "SALES-C-001", False)
    assert changed and entry.enabled is False
    assert path.read_text() == before.replace("enabled: true", "enabled: false")
    assert set_enabled(vault, "SALES-C-001", False)[1] is False


def test_set_enabled_refuses_a_malformed_entry(vault):
    path = write_entry(vault, extra="overlap: never\n")
    before = path.read_bytes()
    with pytest.raises(BadFile, match="overlap 'never'"):
        set_enabled(vault, "SALES-C-001", False)
    assert path.read_bytes() == before


def test_remove_waits_for_the_lock_and_leaves_the_lock_file(vault):
    path = write_entry(vault)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(UsageError, match="stays locked by a daemon"):
            remove(vault, "SALES-C-001", wait_s=0.05)
        assert path.exists()
    finally:
        os.close(fd)
    remove(vault, "SALES-C-001")
    assert not path.exists() and path.with_suffix(".lock").exists()

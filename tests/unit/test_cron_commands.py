"""`modulatio cron ...`: every command, in this process on a real vault (the documented
command as a real process: tests/e2e/test_cli_cron.py)."""

from __future__ import annotations

import json

import pytest

from modulatio_d.store import events
from modulatio_d.store.cron_entries import read_entry


def test_add_with_every_option(vault, run_cli):
    r = run_cli("cron", "add", "OPS", "Rotate the logs", "--schedule", "@weekly",
                "--timezone", "America/New_York", "--step", "logrotate -f conf",
                "--step", "du -sh /var/log", "--catch-up", "skip", "--overlap", "allow",
                "--draft", "--vault", vault.root)
    assert (r.code, r.out, r.err) == (0, "OPS-C-001\n", "")
    e = read_entry(vault, vault.cron_dir("OPS") / "OPS-C-001.md")
    assert (e.schedule, e.expr, e.timezone) == ("@weekly", "0 0 * * 0", "America/New_York")
    assert e.steps == ("logrotate -f conf", "du -sh /var/log")
    assert (e.catch_up, e.overlap, e.approve) == ("skip", "allow", False)


def test_add_with_a_template(vault, run_cli):
    r = run_cli("plan", "new", "SALES", "Follow-up template", "--step", "make mails",
                "--vault", vault.root)
    assert r.code == 0, r.err
    r = run_cli("cron", "add", "SALES", "Weekly follow-up", "--schedule", "0 6 * * 1",
                "--template", "SALES-P-001", "--vault", vault.root)
    assert (r.code, r.out) == (0, "SALES-C-001\n"), r.err
    assert read_entry(vault, vault.cron_dir("SALES") / "SALES-C-001.md").template == "SALES-P-001"


def test_catch_up_all_without_overlap_gets_a_note(vault, run_cli):
    r = run_cli("cron", "add", "SALES", "x", "--schedule", "@daily", "--catch-up", "all",
                "--vault", vault.root)
    assert r.code == 0 and "add --overlap allow" in r.err


@pytest.mark.parametrize(("args", "message"), [
    (["--schedule", "0 25 * * *"],
     ('--schedule: schedule "0 25 * * *" is not a valid cron expression: hour 25 is out of '
      "range 0-23; use 5 fields: minute hour day-of-month month day-of-week")),
    (["--schedule", "@reboot"], '--schedule: schedule "@reboot" is not supported'),
    (["--schedule", "0 6 * * *", "--timezone", "Europe/Berln"],
     ('--timezone: unknown time zone "Europe/Berln": did you mean "Europe/Berlin"? use an '
      "IANA name such as Europe/Berlin or UTC")),
    (["--schedule", "0 6 * * *", "--step", "a", "--template", "SALES-P-001"],
     "give --step or --template, not both"),
    (["--schedule", "0 6 * * *", "--template", "SALES-P-404"],
     "--template: there is no plan SALES/plans/SALES-P-404.md"),
])
def test_add_refuses_bad_input_in_one_line_writing_nothing(vault, run_cli, args, message):
    before = sorted(p.relative_to(vault.root) for p in vault.root.rglob("*"))
    r = run_cli("cron", "add", "SALES", "x", *args, "--vault", vault.root)
    assert r.code == 2 and r.out == ""
    assert r.err.startswith(f"modulatio: {message}") and r.err.count("\n") == 1, r.err
    assert sorted(p.relative_to(vault.root) for p in vault.root.rglob("*")) == before


def test_add_refuses_a_bad_project_and_a_bad_choice(vault, run_cli):
    r = run_cli("cron", "add", "../etc", "x", "--schedule", "@daily", "--vault", vault.root)
    assert r.code == 2 and "project code '../etc' is not a valid name" in r.err
    # argparse's own choices check ("did you mean" only for a close one: not here)
    r = run_cli("cron", "add", "SALES", "x", "--schedule", "@daily", "--catch-up", "newest")
    assert r.code == 2 and r.out == ""
    assert r.err.endswith("modulatio cron add: error: argument --catch-up: invalid choice: "
                          "'newest' (choose from latest, all, skip)\n")
    assert not (vault.root / "SALES").exists()


def add(run_cli, vault, *extra, project="SALES", objective="Report"):
    if "--timezone" not in extra:
        extra = (*extra, "--timezone", "UTC")  # the same file on every host
    r = run_cli("cron", "add", project, objective, *extra, "--vault", vault.root)
    assert r.code == 0, r.err
    return r.out.strip()


def test_list_shows_schedule_zone_state_last_and_next(vault, run_cli):
    a = add(run_cli, vault, "--schedule", "0 6 * * *", "--timezone", "Europe/Berlin")
    b = add(run_cli, vault, "--schedule", "@hourly", "--timezone", "UTC", project="OPS")
    run_cli("cron", "disable", b, "--vault", vault.root)
    bad = vault.cron_dir("OPS") / "broken.md"
    bad.write_text("---\nobjective: x\nschedule: nope\n---\n")
    r = run_cli("cron", "list", "--json", "--vault", vault.root)
    assert r.code == 0
    rows = {row["id"]: row for row in json.loads(r.out)}
    assert rows[a]["schedule"] == "0 6 * * *" and rows[a]["timezone"] == "Europe/Berlin"
    assert rows[a]["enabled"] is True and rows[a]["last_fired_for"] is None
    assert rows[a]["next_fire"].endswith(("T06:00:00+01:00", "T06:00:00+02:00"))
    assert rows[b]["enabled"] is False and rows[b]["next_fire"] is None
    assert rows["broken"]["valid"] is False and "schedule" in rows["broken"]["error"]
    text = run_cli("cron", "list", "--vault", vault.root).out.splitlines()
    assert len(text) == 3
    assert text[0].startswith(f"{b:<16} @hourly") and "disabled" in text[0]
    assert text[1].startswith("broken") and "INVALID" in text[1]
    assert text[2].startswith(f"{a:<16} 0 6 * * *") and "Europe/Berlin" in text[2]
    only = json.loads(run_cli("cron", "list", "--project", "SALES", "--json",
                              "--vault", vault.root).out)
    assert [row["id"] for row in only] == [a]


def test_list_shows_last_fired_for_in_the_entrys_zone(vault, run_cli):
    a = add(run_cli, vault, "--schedule", "0 6 * * *", "--timezone", "Europe/Berlin")
    path = vault.cron_dir("SALES") / f"{a}.md"
    path.write_text(path.read_text().replace("last_fired_for: null",
                                             'last_fired_for: "2025-07-01T04:00:00Z"'))
    (row,) = json.loads(run_cli("cron", "list", "--json", "--vault", vault.root).out)
    assert row["last_fired_for"] == "2025-07-01T06:00:00+02:00"


def test_remove_deletes_the_entry_but_not_its_lock_or_kickoffs(vault, run_cli):
    a = add(run_cli, vault, "--schedule", "@daily")
    kickoff = vault.plan_path("SALES", f"{a}-20250101T0000Z")
    kickoff.parent.mkdir(parents=True)
    kickoff.write_text("---\nstatus: completed\nsub_objectives: [x]\n---\n")
    r = run_cli("cron", "remove", a, "--vault", vault.root)
    assert (r.code, r.out) == (0, f"removed {a} (its kickoff plans stay)\n")
    path = vault.cron_dir("SALES") / f"{a}.md"
    assert not path.exists() and path.with_suffix(".lock").exists() and kickoff.exists()
    r = run_cli("cron", "remove", a, "--vault", vault.root)
    assert r.code == 2 and f"no cron entry named '{a}'" in r.err
    assert add(run_cli, vault, "--schedule", "@daily") == "SALES-C-002"  # never reused


def test_enable_and_disable_rewrite_only_the_enabled_line(vault, run_cli):
    a = add(run_cli, vault, "--schedule", "@daily")
    path = vault.cron_dir("SALES") / f"{a}.md"
    path.write_text(path.read_text() + "\nPeople's notes.\n")
    before = path.read_text()
    r = run_cli("cron", "disable", a, "--vault", vault.root)
    assert (r.code, r.out) == (0, f"{a}: disabled\n")
    assert path.read_text() == before.replace("enabled: true", "enabled: false")
    r = run_cli("cron", "disable", a, "--vault", vault.root)
    assert (r.code, r.out) == (0, f"{a}: disabled (already)\n")
    r = run_cli("cron", "enable", a, "--vault", vault.root)
    assert (r.code, r.out) == (0, f"{a}: enabled\n")
    assert path.read_text() == before
    kinds = [e["event"] for e in events.read(vault.events_path) if e.get("cron") == a]
    assert kinds == ["cron_added", "cron_disabled", "cron_enabled"]


def test_enable_refuses_a_malformed_entry(vault, run_cli):
    a = add(run_cli, vault, "--schedule", "@daily")
    path = vault.cron_dir("SALES") / f"{a}.md"
    path.write_text(path.read_text().replace("catch_up: latest", "catch_up: newest"))
    before = path.read_bytes()
    r = run_cli("cron", "disable", a, "--vault", vault.root)
    assert r.code == 1 and f"{path}:7: catch_up 'newest' is not one of" in r.err
    assert path.read_bytes() == before


def next_lines(run_cli, vault, cron_id, *args):
    r = run_cli("cron", "next", cron_id, *args, "--vault", vault.root)
    assert r.code == 0, r.err
    return r.out.splitlines()


def test_next_previews_across_spring_forward_in_berlin(vault, run_cli):
    daily = add(run_cli, vault, "--schedule", "30 2 * * *", "--timezone", "Europe/Berlin")
    six = add(run_cli, vault, "--schedule", "0 6 * * *", "--timezone", "Europe/Berlin")
    # 2025-03-30 is the last Sunday of March: 02:00 CET becomes 03:00 CEST.
    assert next_lines(run_cli, vault, daily, "-n", "3", "--after", "2025-03-29T12:00:00+01:00") \
        == [
        "Sun 2025-03-30T03:00:00+02:00  Sun 2025-03-30T01:00:00Z",  # 02:30 does not exist
        "Mon 2025-03-31T02:30:00+02:00  Mon 2025-03-31T00:30:00Z",
        "Tue 2025-04-01T02:30:00+02:00  Tue 2025-04-01T00:30:00Z"]
    assert next_lines(run_cli, vault, six, "-n", "2", "--after", "2025-03-29T12:00:00Z") == [
        "Sun 2025-03-30T06:00:00+02:00  Sun 2025-03-30T04:00:00Z",
        "Mon 2025-03-31T06:00:00+02:00  Mon 2025-03-31T04:00:00Z"]
    assert next_lines(run_cli, vault, six, "-n", "1", "--after", "2025-03-28T12:00:00Z") == [
        "Sat 2025-03-29T06:00:00+01:00  Sat 2025-03-29T05:00:00Z"]


def test_next_fall_back_fires_the_repeated_time_once_and_json(vault, run_cli):
    daily = add(run_cli, vault, "--schedule", "30 2 * * *", "--timezone", "Europe/Berlin")
    r = run_cli("cron", "next", daily, "-n", "2", "--after", "2025-10-26T00:00:00+02:00",
                "--json", "--vault", vault.root)
    got = json.loads(r.out)
    assert got["timezone"] == "Europe/Berlin" and got["enabled"] is True
    assert got["fires"] == [
        {"local": "2025-10-26T02:30:00+02:00", "utc": "2025-10-26T00:30:00Z",
         "kickoff": f"{daily}-20251026T0030Z"},
        {"local": "2025-10-27T02:30:00+01:00", "utc": "2025-10-27T01:30:00Z",
         "kickoff": f"{daily}-20251027T0130Z"}]


def test_next_defaults_to_five_from_now_and_refuses_bad_arguments(vault, run_cli):
    a = add(run_cli, vault, "--schedule", "@hourly", "--timezone", "UTC")
    assert len(next_lines(run_cli, vault, a)) == 5
    r = run_cli("cron", "next", a, "-n", "0", "--vault", vault.root)
    assert r.code == 2 and "-n 0: give at least 1" in r.err
    r = run_cli("cron", "next", a, "--after", "tomorrow", "--vault", vault.root)
    assert r.code == 2 and "--after 'tomorrow' is not an ISO time" in r.err
    r = run_cli("cron", "next", "SALES-C-404", "--vault", vault.root)
    assert r.code == 2 and "no cron entry named 'SALES-C-404'" in r.err


def test_next_uses_the_vault_zone_for_an_entry_without_one(vault, run_cli):
    a = add(run_cli, vault, "--schedule", "0 6 * * *", "--timezone", "UTC")
    path = vault.cron_dir("SALES") / f"{a}.md"
    path.write_text(path.read_text().replace("timezone: UTC\n", ""))
    vault.config_path.write_text("timezone: America/New_York\n")
    assert next_lines(run_cli, vault, a, "-n", "1", "--after", "2025-07-01T00:00:00Z") == [
        "Tue 2025-07-01T06:00:00-04:00  Tue 2025-07-01T10:00:00Z"]


def test_validate_reports_a_malformed_entry(vault, run_cli):
    a = add(run_cli, vault, "--schedule", "@daily")
    path = vault.cron_dir("SALES") / f"{a}.md"
    path.write_text(path.read_text().replace("overlap: skip", "overlap: sometimes"))
    r = run_cli("validate", "--vault", vault.root)
    assert r.code == 1 and f"{path}:8: error: overlap 'sometimes' is not one of skip, allow" in r.out

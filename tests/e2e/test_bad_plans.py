"""Poison plans beside a good one, with a real daemon (issue 9, defect 1): each value that
used to crash every daemon (and, as an orphan, the next one) is refused at the scan with
its file and line, the daemon stays up and runs the good plan, and every command that
reads the vault answers with a message, never a traceback. Plus the guard's crash count
as a real daemon process meets it, and `--project`."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import PROJECT, cli, events, modulatio, plan, settled, write_plan
from waiting import wait_for

pytestmark = pytest.mark.timeout(60)

OK = "  - {run: 'true'}\n"
POISON = {  # plan id -> the frontmatter after `id` and `status: approved`
    "RL-INTS": OK + "reflection_log: [1, 2]\n",
    "RL-NULL": OK + "reflection_log: [null]\n",
    "RL-DURATION": OK + "budget: {wall_clock: 1h}\nreflection_log: [{duration_s: abc}]\n",
    "RUN-NUL-ARGV": '  - {run: ["echo", "a\\0b"]}\n',
    "RUN-NUL-TEXT": '  - {run: "echo a\\0b"}\n',
    "ENV-NUL": '  - {run: "true", env: {A: "x\\0y"}}\n',
    "ENV-NAME": '  - {run: "true", env: {"A=B": x}}\n',
    "TIMEOUT-NAN": "  - {run: 'true', timeout: .nan}\n",
    "TOKEN-HUGE": OK + "claim: {token: 1e400}\n",
    "START-YEAR-1": OK + "execution_started_at: 0001-01-01T00:00:00+01:00\n",
    "DEEP-LIST": "  - run: " + "[" * 5000 + "]" * 5000 + "\n",
    "DEEP-MAP": OK + "x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
    "COMPLEX-KEY": OK + "? - a: 1\n: 1\n",
}
LINES = {"RL-INTS": 6, "RL-NULL": 6, "RL-DURATION": 7, "RUN-NUL-ARGV": 5, "RUN-NUL-TEXT": 5,
         "ENV-NUL": 5, "ENV-NAME": 5, "TIMEOUT-NAN": 5, "TOKEN-HUGE": 6, "START-YEAR-1": 6,
         "DEEP-LIST": 5, "DEEP-MAP": 6, "COMPLEX-KEY": 6}


def write_poison(dv, plan_id: str, rest: str) -> None:
    path = dv.plan_path(plan_id)
    path.write_text(f"---\nid: {plan_id}\nstatus: approved\nsub_objectives:\n{rest}---\n")
    os.utime(path, (1e9, 1e9))  # settled long ago: judged at once, and tried first


def no_traceback(result) -> None:
    code, out, err = (result.returncode, result.stdout, result.stderr) \
        if hasattr(result, "returncode") else result
    assert "Traceback" not in out + err, out + err
    assert code in (0, 1), (code, out, err)


def test_poison_plans_are_refused_with_their_line_and_the_good_one_runs(dvault, daemons):
    for plan_id, rest in POISON.items():
        write_poison(dvault, plan_id, rest)
    two_lines = dvault.plan_path("BLOCK-STATUS")  # `status: >-` on two lines: it runs
    two_lines.write_text("---\nid: BLOCK-STATUS\nstatus: >-\n  approved\nsub_objectives:\n"
                         + OK + "---\n")
    write_plan(dvault, "GOOD", [{"run": "true"}], priority=1)  # tried last
    cron = dvault.root / PROJECT / "cron" / "C-1.md"
    cron.parent.mkdir()
    cron.write_text("---\nobjective: x\nschedule: '0 6 * * *'\n? - a: 1\n: 1\n---\n")
    os.utime(cron, (1e9, 1e9))
    d = daemons()
    wait_for(settled(dvault, "GOOD", "completed"), 30, "the good plan completed")
    wait_for(settled(dvault, "BLOCK-STATUS", "completed"), 30, "the two-line status ran")
    wait_for(lambda: len(events(dvault, "file_refused")) == len(POISON) + 1, 10,
             "every poison plan and the cron entry refused")
    refused = {os.path.basename(e["path"])[:-3]: e for e in events(dvault, "file_refused")}
    for plan_id in POISON:
        assert plan_id in refused, (plan_id, d.log())
        e = refused[plan_id]
        assert e["line"] == LINES[plan_id], (plan_id, e)
        assert f"{plan_id}.md:{LINES[plan_id]}: " in d.log()
        assert "status: approved" in dvault.plan_path(plan_id).read_text()  # left as written
    assert refused["C-1"]["kind"] == "cron"
    assert d.alive(), d.log()
    assert events(dvault, "plan_crashed") == []
    assert "Traceback" not in d.log()

    for argv in (["validate"], ["status"], ["status", "--json"], ["plan", "list"],
                 ["metrics"], ["cron", "list"], *(["plan", "show", p] for p in POISON)):
        no_traceback(cli(dvault, *argv))
    shown = cli(dvault, "plan", "show", "RL-INTS")
    assert shown.code == 1 and f"RL-INTS.md:{LINES['RL-INTS']}: reflection_log entry 1" \
        in shown.err
    for argv in (["validate"], ["status"], ["plan", "list"], ["metrics"]):  # real processes
        no_traceback(modulatio(*argv, "--vault", dvault.root))
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0


def test_a_daemon_keeps_its_plan_going_past_a_poison_orphan(dvault, daemons):
    """The orphan case: a poison plan left `executing` (by a daemon that crashed on it
    before) is refused, not taken over and crashed on again."""
    write_poison(dvault, "ORPHAN", OK + "reflection_log: [1]\n")
    path = dvault.plan_path("ORPHAN")
    path.write_text(path.read_text().replace("status: approved", "status: executing"))
    os.utime(path, (1e9, 1e9))
    write_plan(dvault, "GOOD", [{"run": "true"}])
    d = daemons("--once")
    assert d.wait(20) == 0, d.log()
    assert plan(dvault, "GOOD").status.value == "completed"
    assert [e["line"] for e in events(dvault, "file_refused")] == [6]


def test_project_option_takes_an_existing_folder_and_refuses_another(dvault, daemons):
    (dvault.root / "NEW").mkdir()  # made a moment ago, no plans/ yet: served all the same
    d = daemons("--project", "NEW", "--once")
    assert d.wait(20) == 0, d.log()
    r = modulatio("daemon", "--vault", dvault.root, "--project", "NOPE", "--once")
    assert r.returncode == 2
    assert f"no project 'NOPE' in {dvault.root} (projects: {PROJECT})" in r.stderr

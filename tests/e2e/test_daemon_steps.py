"""What a step sees and leaves behind, with real daemons: its environment and folder,
`call:` and `agent:` executors, timeouts, malformed plans beside good ones, and the
example vault run to completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import PY, cli, events, group_members, pid_gone, plan, settled, wait_ticks, write_plan
from waiting import wait_for

from modulatio_d.store.plan_file import read_plan
from modulatio_d.store.vault import Vault

pytestmark = pytest.mark.timeout(30)
PID = "P-P-001"


def test_environment_and_folder_of_a_step(dvault, daemons):
    (dvault.root / "P" / "sub").mkdir()
    dump = ('env | grep "^MODULATIO_\\|^NOTIFY_SOCKET" | sort '
            '> "$MODULATIO_VAULT/env-$MODULATIO_STEP_INDEX";'
            'pwd > "$MODULATIO_VAULT/cwd-$MODULATIO_STEP_INDEX"')
    write_plan(dvault, PID, [{"title": "dump", "run": dump},
                             {"title": "in sub", "run": dump, "cwd": "sub",
                              "env": {"MODULATIO_EXTRA": "x y"}}])
    d = daemons("--once", env={"NOTIFY_SOCKET": "@modulatio-test-nobody-listens"})
    assert d.wait(15) == 0, d.log()
    p = plan(dvault, PID)
    assert p.status.value == "completed"
    env = dict(line.split("=", 1) for line in
               (dvault.root / "env-0").read_text().splitlines())
    path = dvault.plan_path(PID)
    assert env == {
        "MODULATIO_VAULT": str(dvault.root),
        "MODULATIO_PROJECT": "P",
        "MODULATIO_PLAN_ID": PID,
        "MODULATIO_PLAN_FILE": str(path),
        "MODULATIO_STEP_INDEX": "0",
        "MODULATIO_ATTEMPT": "1",
        "MODULATIO_OBJECTIVE": "dump",
        "MODULATIO_USAGE_FILE": str(path.with_suffix(".runs") / "0001-01.usage.jsonl"),
        "MODULATIO_FENCING_TOKEN": f"{PID}:1",
    }  # and no NOTIFY_SOCKET: a step must not speak to systemd as the daemon
    env1 = dict(line.split("=", 1) for line in
                (dvault.root / "env-1").read_text().splitlines())
    assert env1["MODULATIO_STEP_INDEX"] == "1" and env1["MODULATIO_EXTRA"] == "x y"
    assert (dvault.root / "cwd-0").read_text().strip() == str(dvault.root / "P")
    assert (dvault.root / "cwd-1").read_text().strip() == str(dvault.root / "P" / "sub")
    assert p.reflection_log[0]["log"] == f"{PID}.runs/0001-01.log"
    assert (path.with_suffix(".runs") / "0001-01.log").exists()


def test_call_and_agent_steps(dvault, daemons):
    (dvault.root / "P" / "tasks.py").write_text(
        "import json, os\n"
        "def publish(step):\n"
        "    with open(os.path.join(step.vault, 'called.json'), 'w') as f:\n"
        "        json.dump({'plan': step.plan_id, 'index': step.step_index,\n"
        "                   'attempt': step.attempt, 'token': step.fencing_token,\n"
        "                   'objective': step.objective, 'cwd': os.getcwd()}, f)\n"
        "    return {'summary': 'published it',\n"
        "            'usage': [{'model': 'm1', 'input_tokens': 7, 'output_tokens': 3,\n"
        "                       'cost_usd': 0.01, 'call_id': 'c1', 'agent_id': 'tasks'}]}\n"
        "def broken(step):\n"
        "    raise RuntimeError('the call failed on purpose')\n")
    dvault.vault.config_path.write_text(
        "agents:\n"
        "  default: {use: mock}\n"
        '  writer: {run: "echo \\"$MODULATIO_AGENT: $MODULATIO_OBJECTIVE '
        '$MODULATIO_AGENT_OPTIONS\\"", tone: dry}\n'
        "  critic: {use: writer, tone: sharp}\n")
    write_plan(dvault, PID, [
        {"title": "Publish", "call": "tasks:publish"},
        "Collect this week's sources",
        {"objective": "Write the intro", "agent": "writer"},
        {"objective": "Criticise it", "agent": "critic"},
        {"title": "Break", "call": "tasks:broken", "on_failure": "continue"},
    ])
    d = daemons("--once")
    assert d.wait(20) == 0, d.log()
    p = plan(dvault, PID)
    assert p.status.value == "completed", p.last_error
    called = json.loads((dvault.root / "called.json").read_text())
    assert called == {"plan": PID, "index": 0, "attempt": 1, "token": f"{PID}:1",
                      "objective": "Publish", "cwd": str(dvault.root / "P")}
    log = p.reflection_log
    assert [e["outcome"] for e in log] == ["ok", "ok", "ok", "ok", "failed"]
    assert log[0]["summary"] == "published it"
    assert log[1]["summary"] == "mock agent: done: Collect this week's sources"
    assert log[2]["summary"] == 'writer: Write the intro {"tone": "dry"}'
    assert log[3]["summary"] == 'writer: Criticise it {"tone": "sharp"}'
    assert log[4]["exit"] == "exit 1" and log[4]["decision"] == "continue"
    assert "RuntimeError: the call failed on purpose" in (
        dvault.plan_path(PID).with_suffix(".runs") / "0005-01.log").read_text()
    usage = [json.loads(line) for line in
             dvault.plan_path(PID).with_suffix(".usage.jsonl").read_text().splitlines()]
    # agent_id names the agent that ran: `default` uses the built-in mock
    assert [(u["step_index"], u["agent_id"]) for u in usage][:2] == [(0, "tasks"), (1, "mock")]
    assert usage[0]["input_tokens"] == 7 and usage[1]["model"] == "mock-1"


SHADOW = "import os, sys\nopen(os.environ['SHADOW_MARK'], 'a').write(__name__ + '\\n')\nsys.exit(0)\n"


def test_vault_files_named_like_the_builtin_executors_replace_neither(dvault, daemons):
    # <PROJECT>/modulatio_d/daemon/executors/{mock,call_child}.py, a regular package
    # all the way down: with the project folder as the working folder of `python -m`
    # (and on PYTHONPATH for call: steps) they would run instead of the real ones.
    mark = dvault.root / "shadowed"
    fake = dvault.root / "P" / "modulatio_d" / "daemon" / "executors"
    fake.mkdir(parents=True)
    for folder in (fake, fake.parent, fake.parent.parent):
        (folder / "__init__.py").write_text(SHADOW)
    for name in ("mock.py", "call_child.py", "__main__.py"):
        (fake / name).write_text(SHADOW)
    (dvault.root / "P" / "tasks.py").write_text(
        "import sys\n"
        "def where(step):\n"
        "    import modulatio_d\n"
        "    return 'modulatio_d from ' + modulatio_d.__file__\n")
    write_plan(dvault, PID, ["Collect this week's sources",
                             {"title": "Call", "call": "tasks:where"}])
    d = daemons("--once", env={"SHADOW_MARK": str(mark)})
    assert d.wait(20) == 0, d.log()
    p = plan(dvault, PID)
    assert p.status.value == "completed", p.last_error
    log = p.reflection_log
    assert log[0]["summary"] == "mock agent: done: Collect this week's sources"
    assert log[1]["summary"].startswith("modulatio_d from ")
    assert str(dvault.root) not in log[1]["summary"]  # the installed package's, not the vault's
    assert not mark.exists(), mark.read_text()


def test_unknown_agent_is_an_error_outcome_and_a_ticket(dvault, daemons):
    write_plan(dvault, PID, [{"objective": "Do it", "agent": "nobody"}, "never reached"])
    d = daemons("--once")
    assert d.wait(15) == 0, d.log()
    p = plan(dvault, PID)
    assert p.status.value == "paused" and p.current_index == 0
    assert p.reflection_log[-1]["outcome"] == "error"
    assert p.reflection_log[-1]["exit"] == "not started"
    assert "'nobody'" in p.last_error or "nobody" in p.reflection_log[-1]["summary"]
    tickets = list((dvault.root / "P" / "tickets").glob("*.md"))
    assert len(tickets) == 1 and "decision: pending" in tickets[0].read_text()
    log_text = (dvault.plan_path(PID).with_suffix(".runs") / "0001-01.log").read_text()
    assert "agent 'nobody'" in log_text


@pytest.mark.parametrize("step, why", [
    ({"title": "no such program", "run": ["/nonexistent/program"]}, "No such file"),
    ({"title": "no such folder", "run": "true", "cwd": "missing"}, "does not exist"),
])
def test_a_step_that_cannot_start_is_an_error_outcome(dvault, daemons, step, why):
    write_plan(dvault, PID, [step])
    d = daemons("--once")
    assert d.wait(15) == 0, d.log()
    p = plan(dvault, PID)
    assert p.status.value == "paused"
    assert (p.reflection_log[-1]["outcome"], p.reflection_log[-1]["exit"]) == \
        ("error", "not started")
    assert why in (dvault.plan_path(PID).with_suffix(".runs") / "0001-01.log").read_text(
        )


def test_timeout_kills_the_whole_process_group(dvault, daemons):
    step = ('sleep 300 & echo $! > "$MODULATIO_VAULT/bg.pid"; echo $$ > "$MODULATIO_VAULT/sh.pid";'
            ' wait')
    write_plan(dvault, PID, [{"title": "hangs", "run": step, "timeout": 0.5,
                              "on_failure": "continue"},
                             {"title": "next", "run": "true"}])
    d = daemons(tick=0.5)
    pids = [int(wait_for(lambda n=n: (dvault.root / n).exists()
                         and (dvault.root / n).read_text().strip(), 10, n, diag=d.log))
            for n in ("bg.pid", "sh.pid")]
    wait_for(settled(dvault, PID, "completed"), 10, "completed", diag=d.log)
    for pid in pids:
        assert pid_gone(pid), f"pid {pid} of the timed-out step is still running"
    assert group_members(pids[1]) == []
    entry = plan(dvault, PID).reflection_log[0]
    assert entry["outcome"] == "timeout" and entry["decision"] == "continue"
    assert entry["exit"].startswith("timed out after 0.5s")
    assert 0.4 <= entry["duration_s"] < 5


def test_leftovers_of_a_finished_step_are_killed(dvault, daemons):
    """A step that exits 0 but leaves a background process in its group: it goes too."""
    step = 'sleep 300 & echo $! > "$MODULATIO_VAULT/bg.pid"'
    write_plan(dvault, PID, [{"title": "leaves one behind", "run": step}])
    d = daemons("--once")
    assert d.wait(15) == 0, d.log()
    assert plan(dvault, PID).status.value == "completed"
    assert pid_gone(int((dvault.root / "bg.pid").read_text()))


BAD = ("---\nid: P-P-009\ntitle: Broken\nstatus: approved\n"
       "sub_objectives: [ {run: 'echo never'\n---\nThe person's text.\n")


def test_malformed_plan_beside_good_ones(dvault, daemons):
    for n in (1, 2):
        write_plan(dvault, f"P-P-00{n}", [{"run": "true"}, {"run": "true"}])
    bad = dvault.plan_path("P-P-009")
    bad.write_bytes(BAD.encode())
    past = time.time() - 60  # saved a minute ago: no editor is still writing it
    os.utime(bad, (past, past))
    before = bad.stat()
    d = daemons(tick=0.3)
    for n in (1, 2):
        wait_for(settled(dvault, f"P-P-00{n}", "completed"), 10, "good plans run", diag=d.log)
    wait_ticks(d, dvault, 4)
    refused = [e for e in events(dvault, "file_refused") if e["path"].endswith("P-P-009.md")]
    assert len(refused) == 1, refused
    # The parser notices the unclosed list where the head ends (line 6).
    assert refused[0]["line"] == 6 and "invalid YAML" in refused[0]["reason"]
    assert d.log().count("P-P-009.md:6") == 1
    assert bad.read_bytes() == BAD.encode()
    after = bad.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_mode) == \
        (before.st_ino, before.st_mtime_ns, before.st_mode)
    r = cli(dvault, "validate")
    assert r.code == 1 and "P-P-009.md:6: error: invalid YAML" in r.out

    # Broken another way: reported once more. A fixed one runs.
    bad.write_bytes(BAD.replace("status: approved", "status: aproved")
                    .replace("'echo never'", "'echo never'}]").encode())
    os.utime(bad, (past, past))
    wait_for(lambda: len([e for e in events(dvault, "file_refused")
                          if e["path"].endswith("P-P-009.md")]) == 2, 5, "second refusal")
    bad.write_text(BAD.replace("'echo never'", "'echo fixed'}]"))
    wait_for(settled(dvault, "P-P-009", "completed"), 10, "the fixed plan runs", diag=d.log)
    assert len([e for e in events(dvault, "file_refused")
                if e["path"].endswith("P-P-009.md")]) == 2
    assert bad.read_text().endswith("---\nThe person's text.\n")


def test_example_vault_runs_to_completion(tmp_path):
    root = tmp_path / "ex"
    init = subprocess.run([PY, "-m", "modulatio_d", "init", "--example", str(root)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert init.returncode == 0, init.stderr
    run = subprocess.run([PY, "-m", "modulatio_d", "daemon", "--vault", str(root), "--once",
                          "--tick-seconds", "1"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 0, run.stderr
    vault = Vault(root)

    def status(project: str, plan_id: str) -> str:
        path = root / project / "plans" / f"{plan_id}.md"
        return read_plan(vault, path).plan.status.value

    assert status("ESS", "ESS-P-001") == "completed"
    assert status("SALES", "SALES-P-002") == "completed"
    assert status("SALES", "SALES-P-001") == "paused"
    assert status("ESS", "ESS-P-002") == "draft"
    assert status("ESS", "ESS-P-003") == "completed"  # the chain ran in order:
    assert status("ESS", "ESS-P-004") == "completed"  # after ESS-P-001, then ESS-P-003
    assert (root / "ESS" / "out" / "announced.txt").read_text() == "archived 1 digest(s)\n"
    assert "published by ESS-P-001:1" in (root / "ESS" / "out" / "published.txt").read_text()
    assert "ERROR" not in run.stderr and "Traceback" not in run.stderr
    assert sys.executable  # the example runs offline with this interpreter alone


def test_malformed_config_is_reported_once_and_the_daemon_goes_on(dvault, daemons):
    dvault.vault.config_path.write_text("agents: [not, a, mapping]\n")
    write_plan(dvault, PID, ["Text only: the default agent (mock) still exists"])
    d = daemons(tick=0.3)
    wait_for(settled(dvault, PID, "completed"), 10, "the plan runs", diag=d.log)
    wait_ticks(d, dvault, 3)
    refused = events(dvault, "file_refused")
    assert len(refused) == 1 and refused[0]["path"].endswith("config.yaml")
    assert dvault.vault.config_path.read_text() == "agents: [not, a, mapping]\n"
    r = cli(dvault, "validate")
    assert r.code == 1 and "config.yaml" in r.out


def test_unusable_runs_folder_pauses_that_plan_and_the_others_run(dvault, daemons):
    """Something in the way of `<plan-id>.runs/` (here a file of that name) is that plan's
    problem: it pauses with a ticket saying why, and the daemon runs the next plan."""
    write_plan(dvault, PID, [{"run": "true"}], priority=90)
    write_plan(dvault, "P-P-002", [{"run": "true"}], priority=10)
    runs = dvault.plan_path(PID).with_suffix(".runs")
    runs.write_text("a person's file\n")
    d = daemons("--once")
    assert d.wait(15) == 0, d.log()
    p = plan(dvault, PID)
    assert p.status.value == "paused" and p.reflection_log[-1]["outcome"] == "error"
    assert f"{runs}: is not a folder (move the file away)" in p.reflection_log[-1]["summary"]
    assert plan(dvault, "P-P-002").status.value == "completed"
    assert runs.read_text() == "a person's file\n"

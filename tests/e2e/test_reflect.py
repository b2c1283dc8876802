"""The decision after each attempt made by a reflector process: command reflectors, and
a plan's reflector with a real daemon (the default over every outcome, `retries` and
`on_failure`: tests/unit/test_reflect_rules.py)."""

from __future__ import annotations

import json

import pytest
from helpers import plan, write_plan

from modulatio_d.core.plan import OnFailure, StepKind, SubObjective
from modulatio_d.core.verdict import Decision, Outcome
from modulatio_d.daemon.reflect import decide

pytestmark = pytest.mark.timeout(30)

FAILING = [Outcome.FAILED, Outcome.TIMEOUT, Outcome.ERROR]


def step(retries: int = 0, on_failure: OnFailure = OnFailure.PAUSE) -> SubObjective:
    return SubObjective(index=2, title="t", kind=StepKind.RUN, run="x", retries=retries,
                        on_failure=on_failure)


ATTEMPT = {"index": 2, "title": "t", "attempt": 1, "outcome": "failed", "exit": "exit 1"}


def ask(reflector: str, outcome: Outcome = Outcome.FAILED, retries: int = 0, tmp_path=None):
    return decide(reflector, step(retries), outcome, 1, dict(ATTEMPT), str(tmp_path or "/"),
                  {"PATH": "/usr/bin:/bin"})


def test_command_reflector_decides_and_sees_the_attempt(tmp_path):
    seen = tmp_path / "seen.json"
    v = ask(f"cat > {seen}; echo noise; "
            "echo '{\"decision\": \"revise-major\", \"reason\": \"rethink it\"}'",
            retries=1, tmp_path=tmp_path)
    assert (v.decision, v.reason) == (Decision.REVISE_MAJOR, "rethink it")
    sent = json.loads(seen.read_text())
    assert sent == {**ATTEMPT, "default_decision": "retry"}


@pytest.mark.parametrize("reflector", [
    "exit 3",                                         # fails
    "echo not json",                                  # nonsense
    "echo '{\"reason\": \"no decision\"}'",            # no decision
    "echo '{\"decision\": \"explode\"}'",              # unknown decision
    "echo '[\"continue\"]'",                           # not an object
    "true",                                           # prints nothing
    "plugin:no-such-reflector",                       # plugin not installed
])
def test_broken_reflector_falls_back_to_the_default(reflector, caplog):
    v = ask(reflector, retries=1)
    assert v.decision is Decision.RETRY
    assert any("the default decides" in r.getMessage() for r in caplog.records)


def test_plan_reflector_with_a_daemon(dvault, daemons):
    """A plan's reflector answers revise-major for a failed step: paused, critical ticket."""
    script = dvault.root / "tools" / "reflect.sh"
    script.write_text('read -r attempt\n'
                      'case "$attempt" in\n'
                      '  *\'"outcome": "ok"\'*) d=continue;;\n'
                      '  *) d=revise-major;;\n'
                      'esac\n'
                      'echo "{\\"decision\\": \\"$d\\", \\"reason\\": \\"said the script\\"}"\n')
    write_plan(dvault, "P-P-001", [{"title": "fine", "run": "true"},
                                   {"title": "bad", "run": "exit 1", "retries": 3},
                                   {"title": "never", "run": "touch never"}],
               extra=f'reflector: "sh {script}"')
    d = daemons("--once")
    assert d.wait(15) == 0, d.log()
    p = plan(dvault, "P-P-001")
    assert p.status.value == "paused" and p.current_index == 1
    assert [(e["outcome"], e["decision"]) for e in p.reflection_log] == [
        ("ok", "continue"), ("failed", "revise-major")]  # no retries: the reflector said so
    assert "said the script" in p.last_error
    text = next((dvault.root / "P" / "tickets").glob("*.md")).read_text()
    assert "severity: critical" in text


# --- a reflector runs as a watched child, never on the daemon's thread ------------------


def test_a_plugin_reflector_answers_from_a_child(tmp_path, monkeypatch):
    """`plugin:NAME`: found in the entry-point group, run in a child Python."""
    import os
    import sys

    site = tmp_path / "site"
    (site / "fake_reflector-1.0.dist-info").mkdir(parents=True)
    (site / "fake_reflector-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-reflector\nVersion: 1.0\n")
    (site / "fake_reflector-1.0.dist-info" / "entry_points.txt").write_text(
        "[modulatio_d.reflectors]\nstrict = fake_reflector:judge\n")
    (site / "fake_reflector.py").write_text(
        "import os\n"
        "def judge(attempt):\n"
        "    return {'decision': 'abort', 'reason': 'pid %d saw %s' % (os.getpid(),\n"
        "            attempt['default_decision'])}\n")
    monkeypatch.syspath_prepend(str(site))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{site}{os.pathsep}{os.pathsep.join(sys.path)}"}
    v = decide("plugin:strict", step(retries=1), Outcome.FAILED, 1, dict(ATTEMPT),
               str(tmp_path), env)
    assert v.decision is Decision.ABORT
    assert v.reason.endswith("saw retry") and v.reason != f"pid {os.getpid()} saw retry"


def test_a_slow_reflector_keeps_the_watchdog_fed(tmp_path, tmp_path_factory):
    """A real daemon under a real notify socket with a 0.6 s watchdog: while a reflector
    takes seconds to answer, WATCHDOG=1 keeps coming (on the daemon's only thread, a
    blocking wait would have starved it and systemd would kill the daemon)."""
    import signal
    import subprocess
    import sys

    from helpers import clean_env
    from test_notify_daemon import Receiver
    from vault_texts import plan_text, write
    from waiting import wait_for

    from modulatio_d.ops.init import init

    sock = str(tmp_path_factory.mktemp("n") / "notify")
    recv = Receiver(sock)
    vault = init(tmp_path / "vault")
    reflecting, release = vault.root / "reflecting", vault.root / "release"
    reflector = (f"touch {reflecting}; until [ -e {release} ]; do sleep 0.02; done; "
                 "echo '{\"decision\": \"continue\", \"reason\": \"slow but sure\"}'")
    write(vault.plans_dir("N") / "N-P-001.md", plan_text(
        "N-P-001", "approved", "  - title: Quick\n    run: \"true\"\n",
        extra=f"reflector: {json.dumps(reflector)}\n"))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "modulatio_d", "daemon", "--vault", str(vault.root),
         "--tick-seconds", "0.2"], env=clean_env(NOTIFY_SOCKET=sock, WATCHDOG_USEC="600000"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(reflecting.exists, 20, "the reflector running")
        seen = len(recv.drain())
        wait_for(lambda: recv.drain()[seen:].count("WATCHDOG=1") >= 5, 10,
                 "five WATCHDOG=1 while the reflector runs")
        assert daemon.poll() is None and not release.exists()
        release.touch()
        wait_for(lambda: "completed" in (vault.plans_dir("N") / "N-P-001.md").read_text(), 20,
                 "the plan completed")
        assert "decision: continue" in (vault.plans_dir("N") / "N-P-001.md").read_text()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        err = daemon.stderr.read().decode()
        daemon.stderr.close()
        recv.sock.close()
    assert "the default decides" not in err, err  # it answered: no fallback

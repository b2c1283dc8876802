"""`modulatio status` against a real vault in every state, made by real daemons.

The vault (built once per module by `every_state`, also used by
test_metrics.py):
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
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from waiting import wait_for

from modulatio_d import cli
from modulatio_d.core.times import format_time
from modulatio_d.ops import status_text, survey
from modulatio_d.ops.init import init
from modulatio_d.store.vault import Vault

PY = sys.executable
HOST = socket.gethostname()




def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "MODULATIO_VAULT")}
    env.update(extra)
    return env


def modulatio(*argv: object, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """A real `modulatio` process (python -m modulatio_d, as the console script runs)."""
    return subprocess.run([PY, "-m", "modulatio_d", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout, env=clean_env(), check=False, **kw)


def cli_in_process(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    ctx = cli.Context(environ={}, cwd=Path.cwd(), out=out, err=err)
    code = cli.main([str(a) for a in argv], ctx)
    return code, out.getvalue(), err.getvalue()


def write(path: Path, text: str, age_s: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))
    return path


def plan(plan_id: str, status_: str, steps: str, extra: str = "", priority: int = 50) -> str:
    return (f"---\nid: {plan_id}\ntitle: Plan {plan_id}\nstatus: {status_}\n"
            f"priority: {priority}\nsub_objectives:\n{steps}{extra}current_index: 0\n"
            f"reflection_log: []\n---\nBody of {plan_id}.\n")


def cron_entry(entry_id: str, schedule: str, created: datetime, enabled: bool = True) -> str:
    return (f"---\nid: {entry_id}\nobjective: Kickoff of {entry_id}\nschedule: \"{schedule}\"\n"
            f"timezone: UTC\nenabled: {'true' if enabled else 'false'}\ncatch_up: latest\n"
            f"created_at: {format_time(created)}\nlast_fired_for: null\n---\n")


USAGE_LINE = ('echo \'{"model": "m1", "input_tokens": 1000, "output_tokens": 200, '
              '"cost_usd": 0.25}\' >> "$MODULATIO_USAGE_FILE"')
LATER_USAGE = [
    {"model": "m", "input_tokens": 7, "output_tokens": 3, "cost_usd": 0.5},
    {"model": "m", "input_tokens": 11, "output_tokens": 13, "cost_usd": 1.25},
]


@dataclass
class EveryState:
    vault: Vault
    ops_daemon: subprocess.Popen
    stale_pid: int
    started: datetime

    @property
    def root(self) -> Path:
        return self.vault.root


def build_every_state(root: Path) -> EveryState:
    vault = init(root / "vault")
    r = vault.root
    now = datetime.now(UTC)
    hour_ago = now - timedelta(hours=1)

    sales = r / "SALES" / "plans"
    write(sales / "SALES-P-001.md", plan("SALES-P-001", "approved",
                                         f"  - title: Work and report usage\n"
                                         f"    run: {json.dumps(USAGE_LINE)}\n"))
    write(sales / "SALES-P-002.md", plan("SALES-P-002", "approved",
                                         "  - title: Break\n    run: exit 3\n"
                                         "    on_failure: abort\n"))
    write(sales / "SALES-P-003.md", plan("SALES-P-003", "approved",
                                         "  - title: Fine\n    run: \"true\"\n"
                                         "  - title: Needs a person\n    run: exit 4\n"))
    # Malformed, and old enough that the daemon judges it (it waits 2 s after a change).
    write(sales / "SALES-P-004.md", "---\nid: SALES-P-004\nstatus: approved\n"
                                    "sub_objectives: [unclosed\n---\n", age_s=30)
    write(sales / "SALES-P-005.md", plan("SALES-P-005", "draft", "  - Never run\n"))
    write(sales / "SALES-P-006.md", plan("SALES-P-006", "draft", "  - Still a draft\n"))
    cron_dir = r / "SALES" / "cron"
    write(cron_dir / "SALES-C-001.md", cron_entry("SALES-C-001", "* * * * *", hour_ago), 30)
    write(cron_dir / "SALES-C-002.md", cron_entry("SALES-C-002", "* * * * *", hour_ago,
                                                  enabled=False), 30)
    write(cron_dir / "SALES-C-003.md", cron_entry("SALES-C-003", "every tuesday", hour_ago), 30)

    later = r / "LATER" / "plans"
    write(later / "LATER-P-001.md", plan("LATER-P-001", "approved", "  - Waits for a daemon\n"))
    started = now - timedelta(minutes=10)
    write(later / "LATER-P-002.md", plan(
        "LATER-P-002", "executing", "  - title: One\n    run: \"true\"\n"
        "  - title: Two, interrupted\n    run: \"true\"\n  - title: Three\n    run: \"true\"\n",
        extra=f"claim: {{host: {HOST}, pid: 999999, token: 3, claimed_at: "
              f"\"{format_time(started)}\"}}\n"
              f"execution_started_at: {format_time(started)}\n"
              f"in_flight: {{index: 1, attempt: 2, token: 3, started_at: "
              f"\"{format_time(now - timedelta(minutes=5))}\"}}\n")
        .replace("current_index: 0", "current_index: 1"))
    write(later / "LATER-P-003.md", plan("LATER-P-003", "runing", "  - Typo in status\n"))
    write(later / "LATER-P-004.md", "Just notes, no frontmatter.\n")
    write(later / "LATER-P-001.usage.jsonl",
          "".join(json.dumps(u) + "\n" for u in LATER_USAGE) + "not json\n")
    write(r / "LATER" / "cron" / "LATER-C-001.md", cron_entry("LATER-C-001", "0 6 * * *", now))

    done = modulatio("daemon", "--vault", r, "--once", "--project", "SALES",
                     "--tick-seconds", "0.2")
    assert done.returncode == 0, done.stderr
    code, _, err = cli_in_process("plan", "abort", "SALES-P-005", "--vault", r)
    assert code == 0, err

    ops = r / "OPS" / "plans"
    write(ops / "OPS-P-001.md", plan(
        "OPS-P-001", "approved",
        "  - title: Wait for the release file\n"
        "    run: [\"sh\", \"-c\", \"until [ -e release ]; do sleep 0.02; done\"]\n"
        "  - title: After\n    run: \"true\"\n", priority=90))
    write(ops / "OPS-P-002.md", plan("OPS-P-002", "approved", "  - Next in line\n",
                                     priority=10))
    daemon = subprocess.Popen(
        [PY, "-m", "modulatio_d", "daemon", "--vault", str(r), "--project", "OPS",
         "--tick-seconds", "0.3"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=clean_env())

    def step_running() -> bool:
        if daemon.poll() is not None:
            pytest.fail(f"the OPS daemon exited: {daemon.stderr.read().decode()}")
        return any(e.get("event") == "step_started" and e.get("plan") == "OPS-P-001"
                   for e in survey.read_events(vault.events_path, ("step_started",)))

    wait_for(step_running, what="OPS-P-001's first step to start")
    wait_for(lambda: any(d["active_plan"] == "OPS-P-001" and d["pid"] == daemon.pid
                           for d in survey.daemons(vault, datetime.now(UTC))),
               what="the OPS daemon's heartbeat naming OPS-P-001")

    dead = subprocess.run([PY, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    stale_pid = int(dead.stdout)
    beats = vault.daemons_dir
    old = now - timedelta(hours=2)
    write(beats / f"{HOST}.{stale_pid}.json", json.dumps({
        "pid": stale_pid, "host": HOST, "started_at": format_time(old - timedelta(days=1)),
        "tick_seconds": 30.0, "version": "0.1.0", "last_tick": format_time(old),
        "active_plan": "LATER-P-002", "step": 1}))
    write(beats / "elsewhere.42.json", json.dumps({
        "pid": 42, "host": "elsewhere", "started_at": format_time(now - timedelta(hours=3)),
        "tick_seconds": 30.0, "version": "0.1.0",
        "last_tick": format_time(datetime.now(UTC)), "active_plan": None,
        "step": None}))
    return EveryState(vault, daemon, stale_pid, now)


def tear_down(state: EveryState) -> None:
    (state.root / "OPS" / "release").touch()
    if state.ops_daemon.poll() is None:
        state.ops_daemon.send_signal(signal.SIGTERM)
    try:
        state.ops_daemon.wait(timeout=20)
    except subprocess.TimeoutExpired:
        state.ops_daemon.kill()
        state.ops_daemon.wait()
    state.ops_daemon.stderr.close()


_BUILT: dict[str, EveryState] = {}


def shared_every_state(tmp_path_factory):
    """The body of a session fixture: the vault is built once for every module using it.

    test_metrics.py has a fixture of its own around this generator; the
    module-level cache makes both fixtures share one vault and one OPS daemon.
    """
    owner = "state" not in _BUILT
    if owner:
        _BUILT["state"] = build_every_state(tmp_path_factory.mktemp("every"))
    yield _BUILT["state"]
    if owner:
        tear_down(_BUILT.pop("state"))


@pytest.fixture(scope="session")
def every_state(tmp_path_factory):
    yield from shared_every_state(tmp_path_factory)


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
    assert 0 <= ops["step_running_s"] <= ops["running_s"] < 120


def test_executing_plan_without_a_lock_holder_is_an_orphan(snapshot):
    orphan = by_id(snapshot["executing"])["LATER-P-002"]
    assert orphan["orphan"] is True and orphan["holder"] is None
    assert (orphan["done"], orphan["total"], orphan["step_title"]) == (1, 3, "Two, interrupted")
    assert orphan["attempt"] == 2 and orphan["claim"]["token"] == 3
    assert 590 <= orphan["running_s"] <= 900 and 290 <= orphan["step_running_s"] <= 600


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
    out = _Terminal()
    ctx = cli.Context(environ={}, cwd=every_state.root, out=out, err=io.StringIO())
    assert cli.main(["status"], ctx) == 0
    line = next(line for line in out.getvalue().splitlines() if "OPS-P-001" in line
                and "[" in line)
    assert "[" + "░" * 20 + "] 0/2" in line


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
        (folder / f"BIG-{n:04d}.md").write_text(plan(f"BIG-{n:04d}", s, "  - A step\n"))
    (folder / "BIG-EXEC.md").write_text(plan("BIG-EXEC", "executing", "  - Running\n"))
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
    bad.write_text(plan("P-1", "approved", "  - Fixed\n"))  # a person fixed it
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

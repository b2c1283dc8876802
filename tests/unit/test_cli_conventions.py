"""CLI conventions (issue 11, item 6): help on every option, global options before or
after the command, "did you mean", project codes matched but for case, and the exit
codes of docs/cli.md's table, heartbeat's monitoring-plugin codes included."""

from __future__ import annotations

import argparse
import json
import signal
from datetime import timedelta

import pytest

from modulatio_d.cli import build_parser
from modulatio_d.cli.main import leaves
from modulatio_d.core.times import format_time, utcnow
from modulatio_d.ops.init import init


def every_parser(parser: argparse.ArgumentParser, path: str = "modulatio"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from every_parser(child, f"{path} {name}")


def test_every_option_and_argument_of_every_parser_has_help():
    missing = [f"{path} {a.option_strings or a.dest}"
               for path, parser in every_parser(build_parser())
               for a in parser._actions
               if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert not missing, f"options without help text: {missing}"


def test_every_command_takes_the_global_options_after_it():
    for path, parser in leaves(build_parser()):
        flags = {s for a in parser._actions for s in a.option_strings}
        assert "--log-level" in flags, path
        if path not in ("modulatio init", "modulatio completion"):
            assert "--vault" in flags, path


@pytest.fixture
def sales(vault, run_cli):
    """The vault with SALES-P-001 (a draft) and SALES-C-001, and where it is."""
    v = ["--vault", str(vault.root)]
    assert run_cli("plan", "new", "SALES", "Follow up", *v).out == "SALES-P-001\n"
    assert run_cli("cron", "add", "SALES", "Report", "--schedule", "@daily", *v).code == 0
    return vault


@pytest.mark.parametrize("argv", [
    ["--vault", "{v}", "status"], ["status", "--vault", "{v}"],
    ["--vault", "{v}", "--json", "status"], ["--json", "status", "--vault", "{v}"],
    ["status", "--json", "--vault", "{v}"], ["--log-level", "debug", "--vault", "{v}", "status"],
    ["--vault", "{v}", "plan", "list", "--json"], ["--json", "--vault", "{v}", "plan", "list"],
    ["plan", "list", "--vault", "{v}", "--log-level", "error"],
    ["--vault", "{v}", "validate", "--json"], ["--vault", "{v}", "--json", "cron", "list"],
])
def test_global_options_work_before_and_after_the_command(argv, sales, run_cli):
    r = run_cli(*[str(sales.root) if a == "{v}" else a for a in argv])
    assert r.code == 0 and r.err == "", r
    if "--json" in argv:
        json.loads(r.out)


def test_the_option_after_the_command_is_the_one_used(sales, tmp_path, run_cli):
    other = init(tmp_path / "other")
    r = run_cli("--vault", other.root, "plan", "list", "--vault", sales.root)
    assert r.out.startswith("SALES-P-001 ")


@pytest.mark.parametrize("argv, message", [
    (["--json", "daemon"], "`modulatio daemon` does not take --json: it has no JSON output"),
    (["--json", "plan", "new", "X", "t"], "`modulatio plan new` does not take --json"),
    (["--vault", "{v}", "init", "{v}/new"], "`modulatio init` does not take --vault"),
])
def test_a_global_option_the_command_has_no_use_for_is_refused(argv, message, sales,
                                                                run_cli):
    r = run_cli(*[a.replace("{v}", str(sales.root)) for a in argv])
    assert (r.code, r.out) == (2, "") and message in r.err, r
    assert not (sales.root / "new").exists()


@pytest.mark.parametrize("argv, message", [
    (["stauts"], "invalid choice: 'stauts'; did you mean 'status'?"),
    (["plan", "lsit"], "invalid choice: 'lsit'; did you mean 'list'?"),
    (["plan", "list", "--status", "pasued"], "invalid choice: 'pasued'; did you mean 'paused'?"),
    (["plan", "list", "--status", "bogus"], "invalid choice: 'bogus' (choose from draft, "),
    (["plan", "list", "--project", "SALSE"], "no project 'SALSE' in {v} (did you mean "
                                             "'SALES'?)"),
    (["plan", "list", "--project", "NOPE"], "no project 'NOPE' in {v} (projects: SALES)"),
    (["cron", "list", "--project", "SALSE"], "did you mean 'SALES'?"),
    (["plan", "show", "SALES-P-01"], "no plan named 'SALES-P-01': no plans/SALES-P-01.md in "
                                     "{v}; did you mean 'SALES-P-001'?"),
    (["plan", "approve", "sales-p-001"], "did you mean 'SALES-P-001'?"),
    (["cron", "next", "SALES-C-01"], "no cron entry named 'SALES-C-01'"),
    (["cron", "next", "SALES-C-01"], "did you mean 'SALES-C-001'?"),
    (["ticket", "approve", "SALES-P-001-T-1"], "no ticket named 'SALES-P-001-T-1'"),
])
def test_unknown_names_are_refused_with_did_you_mean(argv, message, sales, run_cli):
    r = run_cli(*argv, "--vault", sales.root)
    assert (r.code, r.out) == (2, ""), r
    assert message.replace("{v}", str(sales.root)) in r.err, r.err


def test_daemon_refuses_a_project_that_does_not_exist(sales, run_cli):
    # Refused before the daemon starts: run_daemon's own SIGTERM handler is put back after.
    before = signal.getsignal(signal.SIGTERM)
    try:
        r = run_cli("daemon", "--once", "--project", "NOSUCH", "--vault", sales.root)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert (r.code, r.out) == (2, "")
    assert r.err == f"modulatio: no project 'NOSUCH' in {sales.root} (projects: SALES)\n"
    assert not sales.daemons_dir.exists() or not list(sales.daemons_dir.iterdir())


def test_a_project_code_is_matched_but_for_case_when_one_folder_matches(sales, run_cli):
    r = run_cli("plan", "new", "sales", "Second", "--vault", sales.root)
    assert (r.code, r.out) == (0, "SALES-P-002\n")
    assert r.err == (f"modulatio: note: project 'sales' is SALES (the folder "
                     f"{sales.root / 'SALES'}); using it\n")
    assert not (sales.root / "sales").exists()
    r = run_cli("plan", "list", "--project", "Sales", "--vault", sales.root)
    assert [line.split()[0] for line in r.out.splitlines()] == ["SALES-P-001", "SALES-P-002"]
    r = run_cli("cron", "add", "sales", "Again", "--schedule", "@daily", "--vault", sales.root)
    assert (r.code, r.out) == (0, "SALES-C-002\n")

    # No such folder: a new project, as before.
    r = run_cli("plan", "new", "ops", "First", "--vault", sales.root)
    assert (r.code, r.out, r.err) == (0, "ops-P-001\n", "")
    # Two folders that match but for case: which one is meant is not guessed.
    (sales.root / "Ops").mkdir()
    r = run_cli("plan", "new", "OPS", "Which", "--vault", sales.root)
    assert (r.code, r.out) == (2, "")
    assert "project 'OPS' matches the folders Ops, ops but for case" in r.err


# --- exit codes ----------------------------------------------------------------------------

def test_exit_codes_by_class(sales, tmp_path, run_cli, monkeypatch):
    v = ["--vault", str(sales.root)]
    assert run_cli("plan", "show", "SALES-P-001", *v).code == 0
    # 1: what was asked for was refused or found wrong
    assert run_cli("plan", "resume", "SALES-P-001", *v).code == 1
    # 2: usage, and every way of not pointing at a vault
    assert run_cli("plan", "list", "--nope", *v).code == 2
    assert run_cli("plan", "list", cwd=tmp_path).code == 2  # no vault found
    assert run_cli("plan", "list", "--vault", tmp_path / "nowhere").code == 2  # not a folder
    plain = tmp_path / "plain"
    plain.mkdir()
    r = run_cli("status", "--vault", plain)  # a folder, but no .modulatio/: not a vault
    assert (r.code, r.out) == (2, "")
    assert r.err == (f"modulatio: {plain} is not a vault: it has no .modulatio/ folder (from "
                     f"--vault); make it one with `modulatio init {plain}`\n")
    r = run_cli("status", env={"MODULATIO_VAULT": str(plain)})
    assert r.code == 2 and "(from MODULATIO_VAULT)" in r.err
    assert not (plain / ".modulatio").exists()

    # 3: the system said no (here EACCES on the lock file, as for a non-root user)
    import modulatio_d.store.lock as lock

    real_open = lock.os.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(lock.os, "open", refuse)
    r = run_cli("plan", "approve", "SALES-P-001", *v)
    assert (r.code, r.out) == (3, "")
    assert "SALES-P-001.lock: cannot open the lock file: Permission denied" in r.err
    monkeypatch.undo()

    import modulatio_d.ops.render as render

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(sales.root / "SALES" / "plans"))

    monkeypatch.setattr(render, "list_plans", denied)
    r = run_cli("plan", "list", *v)
    assert r.code == 3
    assert r.err == f"modulatio: system error: {sales.root / 'SALES' / 'plans'}: " \
                    f"Permission denied\n"


def beat(vault, age_s: float, host: str = "elsewhere", pid: int = 4242) -> None:
    """A heartbeat of a daemon on another host (its age alone decides), `age_s` old."""
    vault.daemons_dir.mkdir(parents=True, exist_ok=True)
    last = format_time(utcnow() - timedelta(seconds=age_s), micro=True)
    (vault.daemons_dir / f"{host}.{pid}.json").write_text(json.dumps(
        {"pid": pid, "host": host, "last_tick": last, "active_plan": None, "step": None,
         "started_at": last, "tick_seconds": 30, "version": "0"}))


def test_heartbeat_exit_codes_are_those_of_a_monitoring_plugin(vault, tmp_path, run_cli):
    v = ["--vault", str(vault.root)]
    r = run_cli("heartbeat", *v)
    assert r.code == 2 and r.err == "modulatio: CRITICAL: no live daemon on this vault\n"
    assert json.loads(r.out)["last_tick"] is None

    beat(vault, 100)
    assert run_cli("heartbeat", *v).code == 0
    assert run_cli("heartbeat", "--max-age", "300", *v).code == 0
    r = run_cli("heartbeat", "--max-age", "60", *v)
    assert r.code == 1 and r.err.startswith("modulatio: WARNING: no live daemon ticked within "
                                            "60s (the freshest 10")
    r = run_cli("heartbeat", "--max-age", "30", "--critical-age", "90", *v)
    assert r.code == 2 and r.err.startswith("modulatio: CRITICAL: no live daemon ticked within "
                                            "90s")
    assert run_cli("heartbeat", "--max-age", "30", "--critical-age", "900", *v).code == 1
    assert run_cli("heartbeat", "--all", "--max-age", "300", "--json", *v).code == 0

    # UNKNOWN: the probe could not look (bad arguments, no vault), never CRITICAL
    assert run_cli("heartbeat", "--max-age", "soon", *v).code == 3
    assert run_cli("heartbeat", "--bogus", *v).code == 3
    assert run_cli("heartbeat", cwd=tmp_path).code == 3
    assert run_cli("heartbeat", "--vault", tmp_path / "nowhere").code == 3


def test_no_colour_anywhere(sales, run_cli):
    """The output has no colour to turn off (NO_COLOR is honoured by having none): no
    escape sequence, on a terminal or not."""
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    from cli_runner import run_cli as run_with

    for out in (io.StringIO(), Tty()):
        r = run_with("status", "--vault", sales.root, cwd=sales.root, out=out)
        assert r.code == 0 and "\x1b" not in r.out + r.err

"""`modulatio validate` checks meaning, not only syntax (issue 11, item 5): what parses
but would fail later is an error at its file and line; what may work is a warning,
which fails only with --strict."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modulatio_d.ops.validate import Severity, validate

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ENV = {"PATH": "/usr/bin:/bin"}


def plan(vault, text: str, plan_id: str = "P-P-001", project: str = "P") -> Path:
    folder = vault.plans_dir(project)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{plan_id}.md"
    path.write_text(f"---\nid: {plan_id}\n{text}---\nBody.\n")
    return path


def lines(vault) -> list[str]:
    return [str(p) for p in validate(vault, ENV, NOW)]


def test_a_good_vault_has_no_problem(vault):
    plan(vault, "status: approved\nsub_objectives:\n  - Text for the mock\n"
                "  - {objective: Write, agent: writer}\n  - {run: make, cwd: tools}\n")
    (vault.root / "P" / "tools").mkdir()
    vault.config_path.write_text("timezone: Europe/Berlin\nagents:\n  writer: {use: mock}\n"
                                 "  shell: {run: 'sh -c true'}\nreflector: cat\n")
    assert lines(vault) == []


def test_a_misspelled_zone_in_the_config_is_an_error_with_did_you_mean(vault, run_cli):
    vault.config_path.write_text("# zone of cron entries\ntimezone: Europe/Berlni\n")
    r = run_cli("validate", "--vault", vault.root)
    assert r.code == 1
    assert r.out.splitlines()[0] == (
        f'{vault.config_path}:2: error: timezone: unknown time zone "Europe/Berlni": did you '
        f'mean "Europe/Berlin"? use an IANA name such as Europe/Berlin or UTC (cron entries '
        f'without a timezone of their own do not fire until it is fixed)')


def test_agents_of_the_config_must_resolve(vault):
    vault.config_path.write_text("agents:\n  default: {use: mock}\n  writer: {use: gpt}\n"
                                 "  a: {use: b}\n  b: {use: a}\n")
    c = vault.config_path
    assert lines(vault) == [
        f"{c}:3: error: agent 'writer': uses 'gpt', which is neither an agent of this file, "
        f"built in (mock), nor an installed plugin (modulatio_d.agents) (name an agent of this "
        f"file, mock, or an installed plugin)",
        f"{c}:4: error: agent 'a': uses itself in a loop: a -> b -> a (name an agent of this "
        f"file, mock, or an installed plugin)",
        f"{c}:5: error: agent 'b': uses itself in a loop: b -> a -> b (name an agent of this "
        f"file, mock, or an installed plugin)"]


def test_an_agent_a_step_names_must_exist(vault):
    path = plan(vault, "sub_objectives:\n  - first\n  - objective: Write it\n"
                       "    agent: writr\n")
    assert lines(vault) == [
        f"{path}:5: error: sub-objective 2: agent 'writr' is neither in .modulatio/config.yaml "
        f"agents, built in (mock), nor an installed plugin (modulatio_d.agents) (add it to the "
        f"config's agents)"]


def test_steps_already_done_and_final_plans_are_not_checked_for_meaning(vault):
    plan(vault, "status: executing\ncurrent_index: 1\nsub_objectives:\n"
                "  - {objective: done, agent: gone}\n  - next\n")
    plan(vault, "status: completed\ncurrent_index: 1\nsub_objectives:\n"
                "  - {objective: o, agent: gone, cwd: nowhere}\n", "P-P-002")
    plan(vault, "status: aborted\nreflector: plugin:nope\nsub_objectives: [a]\n", "P-P-003")
    assert lines(vault) == []


def test_reflectors_must_exist(vault, run_cli):
    a = plan(vault, "reflector: plugin:nope\nsub_objectives: [a]\n")
    b = plan(vault, "reflector: ./reflect.sh --strict\nsub_objectives: [a]\n", "P-P-002")
    script = b.parent / "judge.sh"
    script.write_text("#!/bin/sh\necho '{\"decision\": \"continue\"}'\n")
    c = plan(vault, "reflector: ./judge.sh\nsub_objectives: [a]\n", "P-P-003")
    d = plan(vault, "reflector: no-such-reflector-here --x\nsub_objectives: [a]\n", "P-P-004")
    problems = validate(vault, ENV, NOW)
    assert [str(p) for p in problems] == [
        f"{a}:3: error: reflector 'plugin:nope': no plugin 'nope' is installed in the "
        f"entry-point group modulatio_d.reflectors (install the package that provides it, or "
        f"fix the name)",
        f"{b}:3: error: reflector: {b.parent / 'reflect.sh'} does not exist (create it, or fix "
        f"the path (a relative one is taken from the plan's folder))",
        f"{c}:3: error: reflector: {script} is not executable (chmod +x {script})",
        f"{d}:3: warning: reflector: 'no-such-reflector-here' is not on PATH here (install "
        f"it, or give its full path; the daemon's PATH may differ from this shell's)"]
    assert problems[-1].severity is Severity.WARNING

    os.chmod(script, 0o755)
    for path in (a, b):
        path.unlink()
    r = run_cli("validate", "--vault", vault.root, env=ENV)
    assert r.code == 0  # a warning alone does not fail
    assert r.out.splitlines()[-1] == f"{vault.root}: every file is valid, with 1 warning(s)"
    r = run_cli("validate", "--strict", "--vault", vault.root, env=ENV)
    assert r.code == 1
    r = run_cli("validate", "--json", "--vault", vault.root, env=ENV)
    assert r.code == 0
    (only,) = json.loads(r.out)
    assert only["severity"] == "warning" and only["line"] == 3 and only["path"] == str(d)


def test_the_configs_reflector_is_checked_once(vault):
    plan(vault, "sub_objectives: [a]\n")
    plan(vault, "sub_objectives: [a]\n", "Q-P-001", "Q")
    vault.config_path.write_text("reflector: ./judge.sh\n")
    assert lines(vault) == [
        f"{vault.config_path}:1: error: reflector: {vault.plans_dir('P') / 'judge.sh'} does not "
        f"exist (create it, or fix the path (a relative one is taken from the plan's folder))"]


def test_cwd_folders_must_exist(vault):
    path = plan(vault, "cwd: build\nsub_objectives:\n  - {run: make, cwd: src}\n"
                       "  - {run: make, cwd: out}\n")
    project = vault.root / "P"
    assert lines(vault) == [
        f"{path}:3: error: cwd: the folder {project / 'build'} does not exist (create it, or "
        f"fix cwd (relative to the project folder))",
        f"{path}:5: error: sub-objective 1: cwd: the folder {project / 'src'} does not exist "
        f"(create it, or fix cwd (relative to the project folder))",
        f"{path}:6: warning: sub-objective 2: cwd: the folder {project / 'out'} does not exist "
        f"(fine if an earlier step makes it; else create it or fix cwd)"]
    for name in ("build", "src", "out"):
        (project / name).mkdir()
    assert lines(vault) == []


def entry(vault, schedule: str, extra: str = "", entry_id: str = "P-C-001") -> Path:
    folder = vault.cron_dir("P")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{entry_id}.md"
    path.write_text(f"---\nobjective: Report\nschedule: \"{schedule}\"\n{extra}---\n")
    return path


@pytest.mark.parametrize("schedule, when", [("0 0 29 2 *", "2028-02-29T00:00:00+00:00"),
                                            ("0 0 * 2 5#5", "2036-02-29T00:00:00+00:00")])
def test_a_schedule_whose_next_fire_is_over_a_year_away_is_a_warning(vault, schedule, when):
    path = entry(vault, schedule, "timezone: UTC\n")
    assert lines(vault) == [
        f"{path}:3: warning: schedule '{schedule}' fires next on {when}, more than a year from "
        f"now (check the day and month fields)"]


def test_an_entry_without_a_zone_waits_for_the_configs(vault):
    vault.config_path.write_text("timezone: Mars/Olympus\n")
    entry(vault, "@daily")
    problems = lines(vault)
    assert len(problems) == 1 and problems[0].startswith(f"{vault.config_path}:1: error: ")


def test_a_template_must_be_a_valid_plan_of_the_project(vault):
    missing = entry(vault, "@daily", "template: P-P-009\n")
    plan(vault, "sub_objectives: []\n", "P-P-002")  # a syntax error of its own
    broken = entry(vault, "@daily", "template: P-P-002\n", "P-C-002")
    plan(vault, "sub_objectives: [a]\n", "P-P-003")
    entry(vault, "@daily", "template: P-P-003\n", "P-C-003")
    got = lines(vault)
    assert got[1:] == [
        f"{missing}:4: error: template 'P-P-009': there is no plan P/plans/P-P-009.md (create "
        f"the template plan (as a draft) or fix the id)",
        f"{broken}:4: error: template 'P-P-002': is not a valid plan (see its own problem)"]
    assert got[0].startswith(f"{vault.plans_dir('P') / 'P-P-002.md'}:3: error: "
                             f"sub_objectives is empty")


def test_each_file_is_parsed_once(vault, monkeypatch):
    """Meaning checks use what the syntax check parsed: no file is loaded twice."""
    from modulatio_d.core import markdown

    for n in range(1, 6):
        plan(vault, "sub_objectives: [a]\n", f"P-P-00{n}")
    entry(vault, "@daily", "template: P-P-001\n")
    loaded: list[Path] = []
    real = markdown.load
    monkeypatch.setattr(markdown, "load", lambda path, text: (loaded.append(path),
                                                               real(path, text))[1])
    assert lines(vault) == []
    assert len(loaded) == len(set(loaded)) == 6

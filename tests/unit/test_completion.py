"""Shell completion (issue 11, item 6): `modulatio __complete SHELL -- WORDS...` walks the
argparse tree and the vault; the shells' scripts only hand it the words (real shells:
tests/e2e/test_completion_shells.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def sales(vault, run_cli):
    v = ["--vault", str(vault.root)]
    for title in ("Follow up", "Call back", "Write the offer"):
        run_cli("plan", "new", "SALES", title, *v)
    run_cli("plan", "approve", "SALES-P-002", *v)
    run_cli("plan", "new", "OPS", "Rotate keys", "--approve", *v)
    run_cli("cron", "add", "SALES", "Report", "--schedule", "@daily", *v)
    return vault


def complete(run_cli, vault, *words: str, shell: str = "bash") -> list[str]:
    r = run_cli("__complete", shell, "--", *words, env={"MODULATIO_VAULT": str(vault.root)})
    assert r.code == 0 and r.err == "", r
    return r.out.splitlines()


def test_commands_subcommands_and_options(sales, run_cli):
    assert complete(run_cli, sales, "st") == ["status", "stop"]
    assert "__complete" not in complete(run_cli, sales, "")
    assert complete(run_cli, sales, "plan", "a") == ["approve", "abort"]
    assert complete(run_cli, sales, "--vault", str(sales.root), "plan", "list", "--s") == \
        ["--status"]
    assert complete(run_cli, sales, "plan", "list", "--status", "p") == ["paused"]
    assert complete(run_cli, sales, "daemon", "--log-f") == ["--log-format", "--log-file"]
    assert complete(run_cli, sales, "daemon", "--log-fo") == ["--log-format"]
    assert complete(run_cli, sales, "completion", "") == ["bash", "zsh", "fish"]


def test_plan_ids_projects_and_entries_come_from_the_vault(sales, run_cli):
    assert complete(run_cli, sales, "plan", "show", "") == [
        "OPS-P-001", "SALES-P-001", "SALES-P-002", "SALES-P-003"]
    assert complete(run_cli, sales, "plan", "show", "SALES-P-00") == [
        "SALES-P-001", "SALES-P-002", "SALES-P-003"]
    # Only plans whose status allows the action, read with the status peek.
    assert complete(run_cli, sales, "plan", "approve", "") == ["SALES-P-001", "SALES-P-003"]
    assert complete(run_cli, sales, "plan", "pause", "") == ["OPS-P-001", "SALES-P-002"]
    assert complete(run_cli, sales, "plan", "retry", "") == []
    assert complete(run_cli, sales, "plan", "new", "") == ["OPS", "SALES"]
    assert complete(run_cli, sales, "plan", "list", "--project", "S") == ["SALES"]
    assert complete(run_cli, sales, "plan", "list", "--project=S") == ["--project=SALES"]
    assert complete(run_cli, sales, "cron", "next", "") == ["SALES-C-001"]
    assert complete(run_cli, sales, "cron", "add", "SALES", "x", "--template", "O") == [
        "OPS-P-001"]
    # The words typed count: a --vault given on the line is the vault asked.
    r = run_cli("__complete", "bash", "--", "--vault", str(sales.root), "plan", "show", "O")
    assert r.out.splitlines() == ["OPS-P-001"]


def test_bash_splits_an_option_and_its_value_at_the_equals_sign(sales, run_cli):
    assert complete(run_cli, sales, "plan", "list", "--project", "=", "O") == ["OPS"]
    assert complete(run_cli, sales, "--vault", "=", str(sales.root), "plan", "show", "O") == [
        "OPS-P-001"]


def test_paths_are_left_to_the_shell(sales, run_cli):
    assert complete(run_cli, sales, "init", "") == ["__dirs__"]
    assert complete(run_cli, sales, "status", "--vault", "") == ["__dirs__"]
    assert complete(run_cli, sales, "metrics", "--output", "x") == ["__files__"]


def test_zsh_and_fish_get_descriptions(sales, run_cli):
    assert "status:daemons, plans by status with progress, open tickets, next cron fires, " \
        "refused files" in complete(run_cli, sales, "st", shell="zsh")
    assert complete(run_cli, sales, "plan", "approve", "", shell="fish") == [
        "SALES-P-001\tdraft: Follow up", "SALES-P-003\tdraft: Write the offer"]
    assert complete(run_cli, sales, "plan", "show", "OPS", shell="zsh") == [
        "OPS-P-001:approved: Rotate keys"]


def test_no_vault_means_no_candidates_and_no_noise(tmp_path, run_cli):
    r = run_cli("__complete", "bash", "--", "plan", "show", "", cwd=tmp_path)
    assert (r.code, r.out, r.err) == (0, "", "")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shell_has_a_script_that_calls_the_helper(shell, run_cli, tmp_path):
    r = run_cli("completion", shell, cwd=tmp_path)
    assert r.code == 0 and f"__complete {shell} --" in r.out

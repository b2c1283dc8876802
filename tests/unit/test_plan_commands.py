"""`modulatio plan ...`, run in this process on a real vault (with another process holding
a lock, and as `python -m`: tests/e2e/test_cli_plans.py)."""

from __future__ import annotations

import difflib
import json

import pytest
from vault_texts import commented_plan

from modulatio_d.core import times
from modulatio_d.store.plan_file import read_plan


@pytest.fixture
def plan(vault):
    path = vault.plans_dir("ESS") / "ESS-P-001.md"
    path.parent.mkdir(parents=True)
    return path


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(),
                                                  lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_approve_a_draft_changes_only_status_and_adds_rev_and_approved_at(vault, plan, run_cli):
    before = commented_plan("draft")
    plan.write_text(before)
    r = run_cli("plan", "approve", "ESS-P-001", "--vault", vault.root)
    assert (r.code, r.out, r.err) == (0, "ESS-P-001: approved (1/3 done)\n", "")
    after = plan.read_text()
    diff = changed_lines(before, after)
    assert diff[:2] == [
        ("-status: draft      # draft | approved | executing | paused | completed | failed | "
        "aborted"),
        ("+status: approved      # draft | approved | executing | paused | completed | failed | "
        "aborted")]
    assert len(diff) == 7
    assert diff[2].startswith("+approved_at: ")
    # the approval bound to the steps (core/digest.py), the people's view
    # (core/people.py), then rev: the daemon's keys in their order
    assert diff[3:] == ['+approved_digest: "3/3 4bc59440c9b01fc7"',
                        '+progress: "1/3 done · waiting for a daemon"',
                        '+last_result: "step 1 “Collect”: ok"', "+rev: 1"]
    assert times.parse_time(diff[2].split(": ", 1)[1]) is not None
    assert after.endswith(before.split("---\n", 2)[2])  # the body, byte for byte


def test_approve_a_paused_plan_changes_only_status_and_rev(vault, plan, run_cli):
    before = commented_plan("paused", extra="rev: 4   # stamped by the daemon\n")
    plan.write_text(before)
    r = run_cli("plan", "approve", "ESS-P-001", "--vault", vault.root)
    assert r.code == 0, r.err
    assert changed_lines(before, plan.read_text()) == [
        ("-status: paused      # draft | approved | executing | paused | completed | failed | "
        "aborted"),
        ("+status: approved      # draft | approved | executing | paused | completed | failed | "
        "aborted"),
        '+approved_digest: "3/3 4bc59440c9b01fc7"',
        '+progress: "1/3 done · waiting for a daemon"',
        '+last_result: "step 1 “Collect”: ok"',
        "-rev: 4   # stamped by the daemon",
        "+rev: 5   # stamped by the daemon"]


def test_approve_keeps_crlf(vault, plan, run_cli):
    before = commented_plan("draft").replace("\n", "\r\n")
    plan.write_bytes(before.encode())
    assert run_cli("plan", "approve", "ESS-P-001", "--vault", vault.root).code == 0
    after = plan.read_bytes().decode()
    assert "\n" not in after.replace("\r\n", "")
    # status, approved_at, approved_digest, the people's view (progress, last_result), rev
    assert len(changed_lines(before.replace("\r\n", "\n"), after.replace("\r\n", "\n"))) == 7


def test_the_whole_lifecycle_through_the_cli(vault, run_cli):
    v = ["--vault", str(vault.root)]
    r = run_cli("plan", "new", "SALES", "Follow up", "--step", "make a", "--objective",
                "Write the mail", *v)
    assert (r.code, r.out) == (0, "SALES-P-001\n")
    assert run_cli("plan", "new", "SALES", "Second", "--approve", *v).out == "SALES-P-002\n"
    assert run_cli("plan", "new", "OPS", "Other", *v).out == "OPS-P-001\n"

    def status(plan_id):
        return json.loads(run_cli("plan", "show", plan_id, "--json", *v).out)["status"]

    steps = [("approve", "approved"), ("pause", "paused"), ("resume", "approved"),
             ("abort", "aborted"), ("retry", "approved"), ("pause", "paused"),
             ("abort", "aborted")]
    for action, expected in steps:
        r = run_cli("plan", action, "SALES-P-001", *v)
        assert (r.code, r.out) == (0, f"SALES-P-001: {expected} (0/2 done)\n"), (action, r)
        assert status("SALES-P-001") == expected
    assert read_plan(vault, vault.plan_path("SALES", "SALES-P-001")).plan.rev == len(steps)

    r = run_cli("plan", "resume", "SALES-P-001", *v)
    assert (r.code, r.out) == (1, "")
    assert r.err == "modulatio: plan SALES-P-001 is aborted: resume works only from paused\n"
    r = run_cli("plan", "approve", "SALES-P-404", *v)
    assert r.code == 2 and r.err.startswith("modulatio: no plan named 'SALES-P-404'")


def test_retry_puts_a_failed_plan_back_at_its_index(vault, plan, run_cli):
    plan.write_text(commented_plan("failed", extra="last_error: step 2 exited 1\n"))
    r = run_cli("plan", "retry", "ESS-P-001", "--vault", vault.root)
    assert (r.code, r.out) == (0, "ESS-P-001: approved (1/3 done)\n")
    p = read_plan(vault, plan).plan
    assert (p.current_index, p.last_error) == (1, "step 2 exited 1")


def test_list_and_its_filters(vault, run_cli):
    v = ["--vault", str(vault.root)]
    run_cli("plan", "new", "SALES", "Follow up", "--step", "a", "--step", "b", *v)
    run_cli("plan", "new", "SALES", "Approved one", "--approve", *v)
    run_cli("plan", "new", "OPS", "Ops plan", *v)
    broken = vault.plans_dir("OPS") / "OPS-P-002.md"
    broken.write_text("---\nstatus: draft\n---\n")

    r = run_cli("plan", "list", *v)
    assert r.code == 0
    assert [line.split()[:3] for line in r.out.splitlines()] == [
        ["OPS-P-001", "draft", "0/1"], ["OPS-P-002", "invalid", "0/0"],
        ["SALES-P-001", "draft", "0/2"], ["SALES-P-002", "approved", "0/1"]]

    rows = json.loads(run_cli("plan", "list", "--json", *v).out)
    assert [r["id"] for r in rows] == ["OPS-P-001", "OPS-P-002", "SALES-P-001", "SALES-P-002"]
    assert rows[2] == {"id": "SALES-P-001", "project": "SALES", "title": "Follow up",
                       "status": "draft", "priority": 50, "done": 0, "total": 2,
                       "path": str(vault.plan_path("SALES", "SALES-P-001")),
                      "progress": "0/2 done · draft", "last_result": None}
    assert rows[1]["error"].startswith(f"{broken}:2: sub_objectives is missing")

    only = json.loads(run_cli("plan", "list", "--json", "--project", "SALES", "--status",
                              "approved", *v).out)
    assert [r["id"] for r in only] == ["SALES-P-002"]
    assert json.loads(run_cli("plan", "list", "--json", "--status", "paused", *v).out) == []
    invalid = json.loads(run_cli("plan", "list", "--json", "--status", "invalid", *v).out)
    assert [r["id"] for r in invalid] == ["OPS-P-002"]
    r = run_cli("plan", "list", "--json", "--project", "NONE", *v)
    assert (r.code, r.out) == (2, "")
    assert r.err == f"modulatio: no project 'NONE' in {vault.root} (projects: OPS, SALES)\n"


def test_show_text_and_json_with_log_and_usage(vault, plan, run_cli):
    plan.write_text(commented_plan("paused"))
    usage = plan.with_suffix(".usage.jsonl")
    usage.write_text(
        json.dumps({"input_tokens": 100, "output_tokens": 20, "cost_usd": 0.5}) + "\n"
        + "not json\n"
        + json.dumps({"input_tokens": 1, "output_tokens": 2, "cost_usd": 0.25}) + "\n")
    v = ["--vault", str(vault.root)]

    info = json.loads(run_cli("plan", "show", "ESS-P-001", "--json", *v).out)
    assert info["status"] == "paused" and (info["done"], info["total"]) == (1, 3)
    assert info["sub_objectives"] == ["Collect this week's sources", "Summarize them",
                                      "Build the digest"]
    assert info["reflection_log"] == [{"index": 0, "title": "Collect", "outcome": "ok",
                                       "decision": "continue"}]
    assert info["usage"] == {"calls": 2, "input_tokens": 101, "output_tokens": 22,
                             "cost_usd": 0.75}

    r = run_cli("plan", "show", "ESS-P-001", *v)
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0] == "ESS-P-001  Weekly research digest"
    assert lines[1] == "status:   paused"
    assert lines[2] == "progress: 1/3 done · paused at step 2 “Summarize them”"
    assert lines[3] == "last:     step 1 “Collect”: ok"  # the title as it ran
    assert lines[4] == "usage:    2 calls, 123 tokens, $0.7500"
    # steps counted from 1, as people count
    assert lines[5:8] == ["  [x] 1: Collect this week's sources", "  [>] 2: Summarize them",
                          "  [ ] 3: Build the digest"]
    assert lines[8] == f"logs in {vault.root}/ESS/plans/ESS-P-001.runs/:"
    assert lines[9].startswith("  step 1 attempt None ok -> continue")

"""First contact (issue 11, item 8): `status` says what to do when something waits for a
person, and README leads to what a new user and an operator need."""

from __future__ import annotations

import re
from pathlib import Path

from modulatio_d.ops.init import init

ROOT = Path(__file__).resolve().parents[2]


def test_status_ends_with_the_next_step_when_a_ticket_waits(tmp_path, run_cli):
    vault = init(tmp_path / "ex", example=True)  # SALES-P-001 is paused with a ticket
    r = run_cli("status", "--vault", vault.root)
    assert r.code == 0
    assert r.out.splitlines()[-2:] == [
        "", "next: ticket SALES-P-001-T-01 waits for you about plan SALES-P-001: "
            "`modulatio ticket approve SALES-P-001-T-01` resumes the plan, "
            "`modulatio ticket decline SALES-P-001-T-01` aborts it"]

    # The advice works as written: approving it leaves nothing waiting, and no advice.
    assert run_cli("ticket", "approve", "SALES-P-001-T-01", "--vault", vault.root).code == 0
    r = run_cli("status", "--vault", vault.root)
    assert "next:" not in r.out


def test_status_names_a_plan_paused_without_a_ticket(vault, run_cli):
    v = ["--vault", str(vault.root)]
    assert run_cli("plan", "new", "OPS", "Rotate", "--approve", *v).code == 0
    assert run_cli("plan", "pause", "OPS-P-001", *v).code == 0
    r = run_cli("status", *v)
    assert r.out.splitlines()[-1] == ("next: OPS-P-001 is paused with no ticket: "
                                      "`modulatio plan resume OPS-P-001` when it may go on")
    assert "next:" not in run_cli("status", "--json", *v).out


def test_readme_says_what_a_new_user_needs_and_links_the_operators_pages():
    readme = (ROOT / "README.md").read_text()
    assert "Python 3.11" in readme
    assert "mock" in readme and "agents:" in readme and "run:" in readme and "use:" in readme
    assert "MODULATIO_VAULT" in readme and "--vault" in readme
    for page in ("troubleshooting", "upgrading", "backup", "architecture", "cli"):
        assert f"docs/{page}.md" in readme, page
        assert (ROOT / "docs" / f"{page}.md").is_file(), page


def test_troubleshooting_covers_the_symptoms_operators_meet():
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    headings = re.findall(r"(?m)^## (.+)$", text)
    assert headings == ["A plan never runs", "Stuck in executing", "Paused with a ticket",
                        "A file is refused", "Permission errors",
                        "A daemon does not pick up changes", "Heartbeat stale",
                        "A hook does not deliver", "Disk full",
                        "A plan paused after its steps were edited",
                        "A plan file restored from git is undone"]

"""Commands on a Modulatio vault (tests/modulatio_vault.py), in this process: validate,
project folders in either case, `import modulatio [--dry-run]`, `cron add` with
Modulatio's schedule words. The daemon's part is in tests/e2e/test_modulatio_vault.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))
import modulatio_vault as mv  # noqa: E402


@pytest.fixture
def mvault(vault):
    vault.config_path.write_text("agents:\n  default: {use: mock}\n")
    mv.build(vault.root)
    return vault


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".modulatio" not in p.parts}


def test_validate_passes_on_a_modulatio_vault(mvault, run_cli):
    result = run_cli("validate", "--vault", mvault.root)
    assert result.code == 0, result.out + result.err
    assert "cron-config.json: warning: 7 Modulatio cron job(s) not imported" in result.out
    assert run_cli("import", "modulatio-cron", "--vault", mvault.root).code == 0
    after = run_cli("validate", "--vault", mvault.root)
    assert after.code == 0 and "every file is valid\n" in after.out, after.out


def test_two_project_folders_differing_in_case_are_reported(mvault, run_cli):
    (mvault.root / "TST" / "plans").mkdir(parents=True)
    result = run_cli("validate", "--vault", mvault.root)
    assert result.code == 1
    assert "the project folders TST, tst differ only in case" in result.out


def test_plan_new_uses_the_lower_case_folder_and_its_ids(mvault, run_cli):
    result = run_cli("plan", "new", "TST", "Another one", "--vault", mvault.root)
    assert result.code == 0, result.err
    assert "project 'TST' is tst" in result.err  # the note
    assert result.out.strip() == "TST-PLAN-013"  # after TST-PLAN-012
    assert (mvault.root / "tst" / "plans" / "TST-PLAN-013.md").exists()
    assert not (mvault.root / "TST").exists()


def test_import_dry_run_changes_nothing_and_import_is_idempotent(mvault, run_cli):
    before = files(mvault.root)
    dry = run_cli("import", "modulatio", "--dry-run", "--json", "--vault", mvault.root)
    assert dry.code == 0, dry.err
    rows = json.loads(dry.out)
    assert files(mvault.root) == before
    assert sum(r["action"] == "as-is" for r in rows) == 11  # every plan read as it is
    assert [r["path"] for r in rows if r["action"] == "create"] == \
        ["tst/cron/TST-C-NNN.md"] * len(mv.CRON_JOBS)

    done = run_cli("import", "modulatio", "--vault", mvault.root)
    assert done.code == 0 and "7 entries created" in done.out, done.out + done.err
    after = files(mvault.root)
    assert {k: v for k, v in after.items() if k in before} == before  # plans untouched
    made = sorted(set(after) - set(before))
    assert made == [f"tst/cron/TST-C-00{n}.md" for n in range(1, 8)]
    entry = after["tst/cron/TST-C-001.md"].decode()
    assert 'schedule: "daily 06:00"' in entry and "timezone: UTC" in entry
    assert 'x-modulatio-job: "20261130091244123451abc121"' in entry

    again = run_cli("import", "modulatio-cron", "--json", "--vault", mvault.root)
    assert {r["action"] for r in json.loads(again.out)} == {"unchanged"}
    assert files(mvault.root) == after
    assert run_cli("validate", "--vault", mvault.root).code == 0


def test_import_reports_what_cannot_be_imported(vault, run_cli):
    (vault.root / "cron-config.json").write_text(json.dumps({"jobs": [
        {**mv.CRON_JOBS[0], "schedule": "45m"},
        {**mv.CRON_JOBS[1], "jt_id": "jt-1"}]}))
    result = run_cli("import", "modulatio-cron", "--vault", vault.root)
    assert result.code == 1
    assert "the interval 45m has no clock-aligned form" in result.out
    assert "job template 'jt-1' jobs cannot be imported" in result.out
    assert not (vault.root / "tst").exists()


def test_cron_add_takes_the_schedule_words(vault, run_cli):
    (vault.root / "SALES" / "plans").mkdir(parents=True)
    added = run_cli("cron", "add", "SALES", "Report", "--schedule", "daily 06:00",
                    "--timezone", "UTC", "--vault", vault.root)
    assert added.code == 0, added.err
    nxt = run_cli("cron", "next", added.out.strip(), "-n", "2", "--after",
                  "2025-01-01T07:00:00+00:00", "--vault", vault.root)
    assert nxt.out.split("\n")[:2] == ["Thu 2025-01-02T06:00:00+00:00  Thu 2025-01-02T06:00:00Z",
                                       "Fri 2025-01-03T06:00:00+00:00  Fri 2025-01-03T06:00:00Z"]
    bad = run_cli("cron", "add", "SALES", "Report", "--schedule", "weekly xyz 09:00",
                  "--vault", vault.root)
    assert bad.code == 2 and 'day "xyz" is not one of' in bad.err

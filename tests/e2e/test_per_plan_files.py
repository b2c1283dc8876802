"""What a plan costs in files (issue 12, target 1): a plan of a few steps run by a real
daemon creates no `<plan-id>.log.jsonl` (its short reflection_log stays in the owned-keys
record, store/owned_keys.py), a long one does, and the record still repairs a stale save
of a finished one-step plan. Real daemons, real files."""

from __future__ import annotations

from helpers import PROJECT, plan, write_plan

from modulatio_d.store import owned_keys


def test_one_step_plans_create_no_log_file_and_their_record_still_repairs(dvault, daemons):
    for n in range(1, 4):
        write_plan(dvault, f"P-P-00{n}", [{"run": "true"}])
    write_plan(dvault, "P-P-010", [{"run": "true"}] * (owned_keys.INLINE + 2))
    stale = dvault.plan_path("P-P-001").read_text()  # an editor's buffer from before
    d = daemons("--once")
    assert d.wait(120) == 0, d.log()
    state = dvault.root / ".modulatio" / "state" / PROJECT
    for n in range(1, 4):
        record = state / f"P-P-00{n}.json"
        assert plan(dvault, f"P-P-00{n}").status.value == "completed"
        assert not owned_keys.log_path(record).exists()
        assert owned_keys.load(record).keys["reflection_log"] == plan(
            dvault, f"P-P-00{n}").reflection_log
    long = state / "P-P-010.json"
    assert len(owned_keys.log_path(long).read_text().splitlines()) == owned_keys.INLINE + 2
    assert len(owned_keys.load(long).keys["reflection_log"]) == owned_keys.INLINE + 2
    # The old buffer saved over the completed plan: the record puts the daemon's keys back.
    dvault.plan_path("P-P-001").write_text(stale)
    d = daemons("--once")
    assert d.wait(60) == 0, d.log()
    repaired = plan(dvault, "P-P-001")
    assert repaired.status.value == "completed" and len(repaired.reflection_log) == 1

"""`status` and `metrics` keep each plan's status look (the regex peek) in the per-user row
cache under the file's stat signature: an unchanged plan is not read again, a changed one
is, and a plan that must be parsed (executing, scheduled, unreadable status) always is."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from vault_texts import plan_text

from modulatio_d.ops import survey
from modulatio_d.store import rowcache
from modulatio_d.store.vault import Vault


@pytest.fixture
def reads(monkeypatch):
    seen: list[str] = []
    real = Vault.read

    def counting(self, path, kind=None):
        seen.append(str(path).rsplit("/", 1)[-1][:-3])
        return real(self, path, kind)

    monkeypatch.setattr(Vault, "read", counting)
    monkeypatch.setattr(rowcache, "RACY_S", -1.0)  # files made just now may be cached
    return seen


def write(vault, plan_id: str, status: str, extra: str = ""):
    folder = vault.plans_dir("P")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{plan_id}.md"
    path.write_text(plan_text(plan_id, status, "  - A step\n").replace(
        f"status: {status}\n", f"status: {status}\n{extra}"))
    return path


def statuses(vault) -> dict[str, str]:
    return {p["id"]: p["status"] for p in survey.survey(vault, datetime.now(UTC)).plans}


def test_unchanged_plans_are_not_read_again(vault, reads):
    draft = write(vault, "P-P-001", "draft")
    write(vault, "P-P-002", "completed")
    write(vault, "P-P-003", "executing")
    write(vault, "P-P-004", "approved", "not_before: 2999-01-01T00:00:00Z\n")
    write(vault, "P-P-005", "approved")
    first = statuses(vault)
    assert first == {"P-P-001": "draft", "P-P-002": "completed", "P-P-003": "executing",
                     "P-P-004": "approved", "P-P-005": "approved"}
    reads.clear()
    assert statuses(vault) == first
    assert reads == ["P-P-003", "P-P-004"]  # parsed every time: executing, scheduled
    draft.write_text(draft.read_text().replace("status: draft", "status: paused"))
    reads.clear()
    assert statuses(vault)["P-P-001"] == "paused" and "P-P-001" in reads


def test_a_status_line_that_cannot_be_read_is_read_every_time(vault, reads):
    write(vault, "P-P-001", "draft").write_text("---\nid: P-P-001\nstatus: [x\n---\n")
    assert statuses(vault) == {"P-P-001": "invalid"}
    reads.clear()
    assert statuses(vault) == {"P-P-001": "invalid"} and reads == ["P-P-001"]


def test_status_and_metrics_tick_once_a_plan(vault):
    from modulatio_d.ops import metrics

    for n in range(3):
        write(vault, f"P-P-00{n + 1}", "draft")
    ticks: list[int] = []
    survey.survey(vault, datetime.now(UTC), tick=lambda: ticks.append(1))
    assert len(ticks) == 3
    metrics.text(vault, datetime.now(UTC), {}, lambda: ticks.append(2))
    assert ticks.count(2) == 3


def test_counts_are_what_a_loop_over_the_plans_makes_in_its_order():
    import random
    from datetime import UTC, datetime

    from modulatio_d.ops.survey import INVALID, STATUSES, Survey

    rng = random.Random(3)
    for _ in range(200):
        s = Survey(vault="v", now=datetime.now(UTC))
        s.plans = [{"id": "x", "project": rng.choice("ABCD"),
                    "status": rng.choice([*STATUSES, INVALID])} for _ in range(rng.randint(0, 30))]
        by_status, by_project = {k: 0 for k in (*STATUSES, INVALID)}, {}
        for row in s.plans:
            by_status[row["status"]] += 1
            project = by_project.setdefault(row["project"], {})
            project[row["status"]] = project.get(row["status"], 0) + 1
        got = s.counts()
        assert got == {"total": len(s.plans), "by_status": by_status, "by_project": by_project}
        assert [(p, list(c)) for p, c in got["by_project"].items()] == \
            [(p, list(c)) for p, c in by_project.items()]


def test_the_values_written_out_for_a_warm_start_are_the_readers_own():
    """survey, metrics and control_view name what core/plan, core/verdict, store/pause and
    core/capacity define, so that a warm `status` or `metrics` imports none of them."""
    from modulatio_d.core.capacity import Capacity
    from modulatio_d.core.plan import PlanStatus
    from modulatio_d.core.verdict import FAILURES
    from modulatio_d.ops import control_view, metrics
    from modulatio_d.store import pause

    assert survey.STATUSES == tuple(s.value for s in PlanStatus)
    assert metrics.FAILURES == {o.value for o in FAILURES}
    assert control_view.PAUSE_FILE == pause.FILE
    assert control_view.NO_PAUSE == pause.State().as_dict()
    assert control_view.NO_CAPACITY == Capacity().as_dict()


def test_the_latest_paused_plans_are_parsed_once(vault, reads):
    write(vault, "P-P-001", "paused")
    broken = write(vault, "P-P-002", "paused")
    broken.write_text(broken.read_text().replace("current_index: 0", "current_index: x"))
    write(vault, "P-P-003", "draft")
    first = survey.survey(vault, datetime.now(UTC))
    assert sorted(reads) == ["P-P-001", "P-P-001", "P-P-002", "P-P-002", "P-P-003"]
    reads.clear()
    again = survey.survey(vault, datetime.now(UTC))
    assert reads == []  # the detail, and why the other does not parse, kept in the look
    assert again.as_dict() | {"now": None} == first.as_dict() | {"now": None}
    assert [p["detail"] for p in again.paused] == [True, False]
    assert [r["path"] for r in again.refused] == ["P/plans/P-P-002.md"]
    broken.write_text(broken.read_text().replace("current_index: x", "current_index: 0"))
    assert [p["detail"] for p in survey.survey(vault, datetime.now(UTC)).paused] == [True, True]
    assert reads == ["P-P-002", "P-P-002"]


def test_the_pause_file_and_the_config_are_read_again_only_when_changed(vault, monkeypatch):
    from modulatio_d.ops import control_view
    from modulatio_d.store import config, pause

    monkeypatch.setattr(rowcache, "RACY_S", -1.0)
    loads: list[str] = []
    for module in (config, pause):
        real = module.load
        monkeypatch.setattr(module, "load", lambda p, real=real, **kw: loads.append(p.name)
                            or real(p, **kw))
    assert control_view.control(vault, [])["pause"] == control_view.NO_PAUSE  # no file
    assert loads == ["config.yaml"]
    vault.config_path.write_text("capacity: {vault: 2}\n")
    (vault.meta / "pause.yaml").write_text("vault: {by: ana, at: 2026-12-02T10:00:00Z}\n")
    first = control_view.control(vault, [])
    assert first["capacity"]["vault"] == 2 and first["pause"]["vault"]["by"] == "ana"
    assert [s["limit_of"] for s in first["slots"]] == ["vault"]
    loads.clear()
    assert control_view.control(vault, []) == first and loads == []
    vault.config_path.write_text("capacity: {vault: x}\n")  # refused: that is kept too
    refused = control_view.control(vault, [])
    assert "refused" in refused["capacity"] and refused["slots"] == []
    assert control_view.control(vault, []) == refused and loads == ["config.yaml"]

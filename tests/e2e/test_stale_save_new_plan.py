"""A record only repairs the plan it was written for (docs/plan-file.md, "Stale saves").

A project folder deleted but its daemon state kept: a new plan with an old plan's id
must run, not be "repaired" to the old plan's `completed`; and `plan new` in the
re-created project never gives out an id that has a record left.
"""

from __future__ import annotations

import shlex
import shutil

import pytest
from helpers import PROJECT, cli, events, marks, settled, write_plan
from waiting import wait_for

from modulatio_d.store.lock import is_held, lock_path

pytestmark = pytest.mark.timeout(40)
PID = "P-P-001"


@pytest.mark.parametrize("how", ["by hand", "plan new, given the old id"])
def test_new_plan_with_an_old_plans_id_runs(dvault, daemons, how):
    old_marks, new_marks = dvault.root / "old-marks", dvault.root / "new-marks"
    write_plan(dvault, PID, [{"title": "old step", "run": dvault.step(old_marks)}])
    d = daemons(tick=0.3)
    wait_for(settled(dvault, PID, "completed"), 10, "old plan completed", diag=d.log)
    wait_for(lambda: not is_held(lock_path(dvault.plan_path(PID))), 5, "lock released")
    assert dvault.vault.record_path(PROJECT, PID).exists()

    shutil.rmtree(dvault.root / PROJECT)  # the project deleted; .modulatio/state/ kept
    dvault.plans.mkdir(parents=True)
    if how == "by hand":
        write_plan(dvault, PID, [{"title": "new step", "run": dvault.step(new_marks)}],
                   title="A new plan")
    else:
        # A draft, so that no daemon claims it under the id it is given (its claim and
        # a rename of the running file would be a different story); approved once it
        # has the old id, in one rename as an editor saves.
        r = cli(dvault, "plan", "new", PROJECT, "A new plan", "--step",
                shlex.join(dvault.step(new_marks)))
        assert r.code == 0, r.err
        made = sorted(p.name for p in dvault.plans.glob("*.md"))
        assert made == ["P-P-002.md"], f"plan new reused a recorded id: {made}"
        text = (dvault.plans / "P-P-002.md").read_text()
        assert "status: draft" in text, text
        saved = dvault.plans / ".P-P-001.md.swp"
        saved.write_text(text.replace("P-P-002", PID).replace("status: draft",
                                                             "status: approved"))
        saved.rename(dvault.plan_path(PID))
        (dvault.plans / "P-P-002.md").unlink()

    wait_for(settled(dvault, PID, "completed", "failed", "paused"), 10, "new plan settled",
             diag=d.log)
    assert not events(dvault, "stale_save_repaired", plan=PID), \
        "the new plan was taken for a stale save of the old one"
    p = settled(dvault, PID, "completed")()
    assert p is not None and p.title == "A new plan", d.log
    assert [m[0] for m in marks(new_marks)] == ["start", "end"], "the new plan never ran"
    assert [m[0] for m in marks(old_marks)] == ["start", "end"]

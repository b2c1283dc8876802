"""The pool of ops/parallel.py with real forked workers: `plan list`, `validate` and
`status` on a vault of valid and broken plans give what one process reading a file at a
time gives (the unit lane checks the same with an in-process pool,
tests/unit/test_parallel_rows.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from modulatio_d.ops import parallel, render, validate
from modulatio_d.ops.survey import survey
from modulatio_d.store import rowcache
from modulatio_d.store.vault import Vault

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PLANS = [
    "status: draft\nsub_objectives:\n  - {run: 'true'}\n",
    "status: completed\nsub_objectives:\n  - {run: 'true'}\ncurrent_index: 1\n",
    "status: draft\ncwd: nowhere\nsub_objectives:\n  - {run: 'true'}\n",
    "status: draft\nsub_objectives: [unclosed\n",
    "status: sideways\nsub_objectives:\n  - {run: 'true'}\n",
]


def test_forked_workers_give_the_rows_one_process_gives(tmp_path, monkeypatch):
    root = tmp_path / "vault"
    (root / ".modulatio").mkdir(parents=True)
    (root / ".modulatio" / "config.yaml").write_text("")
    (root / "P" / "plans").mkdir(parents=True)
    for n in range(40):
        (root / "P" / "plans" / f"P-P-{n:03d}.md").write_text(
            f"---\nid: P-P-{n:03d}\ntitle: Plan {n}\n{PLANS[n % len(PLANS)]}---\n")
    monkeypatch.setattr(rowcache, "RACY_S", -1.0)
    monkeypatch.setattr(parallel, "CHUNK", 7)

    def run(cache: str) -> list:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / cache))
        return [render.list_plans(Vault(root)), render.list_plans(Vault(root), status="invalid"),
                [str(p) for p in validate.validate(Vault(root), {"PATH": "/bin"})],
                survey(Vault(root), NOW).as_dict()]

    one = run("serial")
    monkeypatch.setattr(parallel, "MIN_FILES", 1)
    started = []
    real = parallel.start
    monkeypatch.setattr(parallel, "start", lambda jobs: started.append(jobs) or real(jobs))
    monkeypatch.setattr(parallel, "workers", lambda count: 2)
    assert run("pooled") == one
    assert started == [2, 2, 2, 2]  # a real pool for each of the four
    assert sum("error" in p for p in one[2]) >= 3 and len(one[1]) == 16

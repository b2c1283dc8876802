"""Refusals: a bad file is told once per version, with its path relative to the vault."""

import os
import time

from modulatio_d.core.errors import BadFile
from modulatio_d.store.refusals import Refusals, settled


def test_told_once_per_version_and_again_after_a_clear(vault):
    told = []
    r = Refusals(vault, lambda event, **f: told.append((event, f)), "plan")
    path = vault.root / "P" / "plans" / "P-P-001.md"
    error = BadFile(path, "unknown status 'runing'", 3)
    r.tell(path, "P", error, version=(1, 2))
    r.tell(path, "P", error, version=(1, 2))
    assert told == [("file_refused", {"project": "P", "kind": "plan",
                                      "path": "P/plans/P-P-001.md", "line": 3,
                                      "reason": "unknown status 'runing'"})]
    assert r.current == {str(path): str(error)}
    r.tell(path, "P", error, version=(1, 3))  # the file changed, still bad: news again
    assert len(told) == 2
    r.clear(path)
    assert r.current == {}
    r.tell(path, "P", error, version=(1, 3), kind="config")
    assert len(told) == 3 and told[-1][1]["kind"] == "config"


def test_a_file_saved_just_now_is_not_settled(tmp_path):
    path = tmp_path / "f.md"
    path.write_text("x")
    assert not settled(path, time.time())
    past = time.time() - 60
    os.utime(path, (past, past))
    assert settled(path, time.time())
    assert not settled(tmp_path / "gone.md", time.time())

"""A real daemon against a real editor that keeps saving old buffers (issue 9, defect 4).

The editor process watches the plan file; each time the daemon's `rev` moves,
it saves the copy it had before (an editor buffer opened before the daemon's
last write) with a new title of its own: "stale". In "mixed", every other
save is instead a fresh edit of what is on disk now. The daemon runs a plan of
40 steps through all of it. Afterwards: every step ran once and has its one
reflection entry, the claim token was never reused, and the person's last
title is the plan's title.
"""

from __future__ import annotations

import subprocess

import pytest
from helpers import PY, events, plan, settled, starts, write_plan
from waiting import wait_for

PID = "P-P-001"
STEPS = 40

EDITOR = r'''
import os, re, sys, time
path, mode, stop, record, ready = sys.argv[1:6]
rev_re = re.compile(rb"(?m)^rev: (\d+)")
status_re = re.compile(rb"(?m)^status: (\w+)")


def read():
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def save(data, n):
    data = re.sub(rb"(?m)^title: .*$", b"title: edit %d" % n, data, count=1)
    tmp = path + ".swp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    with open(record, "a") as f:
        f.write("%d\n" % n)


buffer = read()
seen = rev_re.search(buffer)
open(ready, "w").close()
n = 0
while not os.path.exists(stop):
    now = read()
    if now is None or not now.startswith(b"---\n"):
        continue
    if status_re.search(now).group(1) == b"completed":
        break
    rev = rev_re.search(now)
    if rev and (seen is None or int(rev.group(1)) > int(seen.group(1))):
        n += 1
        if mode == "mixed" and n % 2 == 0:
            save(now, n)  # a fresh edit of the file as it is
        else:
            save(buffer, n)  # the old buffer, from before the daemon's last write
        buffer, seen = now, rev
    time.sleep(0.001)
'''


@pytest.mark.parametrize("mode", ["stale", "mixed"])
def test_an_editor_saving_old_buffers_loses_nothing(dvault, daemons, tmp_path, mode):
    path = write_plan(dvault, PID, [{"title": f"step {i}", "run": dvault.step()}
                                    for i in range(STEPS)])
    saves, stop, ready = tmp_path / "saves", tmp_path / "stop", tmp_path / "ready"
    editor_py = tmp_path / "editor.py"
    editor_py.write_text(EDITOR)
    editor = subprocess.Popen([PY, "-S", str(editor_py), str(path), mode, str(stop),
                               str(saves), str(ready)])
    try:
        # The editor's first buffer is the approved file, from before any claim.
        wait_for(ready.exists, 30, "the editor's first read")
        d = daemons()
        wait_for(lambda: editor.poll() is not None, 120, "the editor to see the plan completed",
                 diag=d.log)
    finally:
        stop.touch()
        editor.wait(timeout=30)
    # The editor's last save may have landed on the completed plan: the idle daemon
    # repairs it (its record is the truth), so wait for the plan to settle.
    done = wait_for(settled(dvault, PID, "completed"), 30, "the plan completed", diag=d.log)
    n_saves = len(saves.read_text().split())
    assert n_saves >= STEPS, f"the editor saved only {n_saves} times"

    log = done.reflection_log
    assert [e["index"] for e in log] == list(range(STEPS)), "lost or repeated entries"
    assert all(e["outcome"] == "ok" and e["token"] == 1 for e in log)
    for i in range(STEPS):
        assert len(starts(dvault, i)) == 1, f"step {i} ran {len(starts(dvault, i))} times"
    tokens = [e["token"] for e in events(dvault) if e["event"] in ("claimed",
                                                                    "orphan_recovered")]
    assert tokens == [1], f"claim tokens {tokens}: one claim, never reused"
    assert done.claim["token"] == 1 and done.current_index == STEPS
    # The person's last save is what they want the title to be.
    last = int(saves.read_text().split()[-1])
    wait_for(lambda: plan(dvault, PID).title == f"edit {last}", 10,
             f"the title of the person's last save (edit {last})", diag=d.log)
    assert events(dvault, "stale_save_repaired", plan=PID), "no stale save was ever seen"
    assert d.alive()
    assert "Traceback" not in d.log(), d.log()

"""Temp files left by killed writers are swept by a real daemon at its start (issue 9):
a writer SIGKILLed between creating its temp file and renaming it, old enough; a
person's files and a fresh temp file stay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from helpers import PY, clean_env, write_plan

PID = "P-P-001"
WRITER = r"""
import os, signal, sys
from pathlib import Path
from modulatio_d.store import atomic
target = Path(sys.argv[1])
def killed(*a):  # the kill lands between the complete temp file and its rename
    os.kill(os.getpid(), signal.SIGKILL)
os.replace = killed
atomic.replace(target, b"half done")
"""


def test_a_daemon_sweeps_the_temp_files_killed_writers_left(dvault):
    write_plan(dvault, PID, [{"title": "one", "run": "true"}])
    record = dvault.vault.record_path("P", PID)
    record.parent.mkdir(parents=True)
    for target in (dvault.plan_path("P-P-009"), record):
        done = subprocess.run([sys.executable, "-c", WRITER, str(target)], check=False)
        assert done.returncode == -signal.SIGKILL
    left = sorted(dvault.plans.glob(".*.tmp")) + sorted(record.parent.glob(".*.tmp"))
    assert len(left) == 2
    hour_ago = time.time() - 3600
    for path in left:
        os.utime(path, (hour_ago, hour_ago))
    person = dvault.plans / ".P-P-001.md.swp"
    person.write_text("a person's swap file")
    os.utime(person, (hour_ago, hour_ago))
    fresh = dvault.plans / ".P-P-002.md.abcd1234.tmp"
    fresh.write_text("a writer at work")

    done = subprocess.run([PY, "-m", "modulatio_d", "daemon", "--vault", str(dvault.root),
                           "--once"], capture_output=True, text=True, timeout=60,
                          env=clean_env(), check=False)
    assert done.returncode == 0, done.stderr
    assert not any(p.exists() for p in left), done.stderr
    assert person.exists() and fresh.exists()
    assert done.stderr.count("a temp file left by a killed writer") == 2

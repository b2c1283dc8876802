"""Creating plans and changing their status while other processes create plans or hold
the lock (the same with nobody else about: tests/unit/test_plan_ops.py)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modulatio_d.core import markdown
from modulatio_d.core.errors import LockBusy
from modulatio_d.core.plan import PlanStatus
from modulatio_d.ops.plans import new_plan
from modulatio_d.store import events
from modulatio_d.store.lock import lock_path
from modulatio_d.store.plan_file import change_status, read_plan

NOW = datetime(2025, 11, 4, 10, 0, tzinfo=UTC)

HOLDER = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b'{"host": "h", "pid": %d, "claimed_at": "now"}' % os.getpid())
print("locked", flush=True)
sys.stdin.read()        # hold the lock until the test closes our stdin
"""


class LockHolder:
    """Another process holding a plan's lock (flock) until `release()`."""

    def __init__(self, lock: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline() == "locked\n"

    def release(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.release()


@pytest.fixture
def log(vault):
    return events.EventLog(vault.events_path, clock=lambda: NOW)


@pytest.mark.timeout(60)
def test_concurrent_plan_new_from_many_processes(vault):
    procs, each = 6, 4
    script = (f"for i in $(seq {each}); do "
              f"'{sys.executable}' -m modulatio_d plan new P \"Title $i\" --vault '{vault.root}' "
              f"|| exit 1; done")
    running = [subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(procs)]
    printed = []
    for p in running:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        printed += out.split()
    total = procs * each
    assert len(printed) == total and len(set(printed)) == total
    files = sorted(p.stem for p in vault.plans_dir("P").glob("*.md"))
    assert files == sorted(printed) == [f"P-P-{n:03d}" for n in range(1, total + 1)]
    for plan_id in files:
        plan = read_plan(vault, vault.plan_path("P", plan_id)).plan
        assert plan.id == plan_id and plan.status is PlanStatus.DRAFT
    assert not [p for p in vault.plans_dir("P").iterdir() if p.name.startswith(".")]
    created = [e for e in events.read(vault.events_path) if e["event"] == "plan_created"]
    assert sorted(e["plan"] for e in created) == files


def test_status_change_under_a_running_daemon_is_written_as_an_editor(vault, log):
    plan_id, path = new_plan(vault, "P", "T", [("run", "true")], approve=True, now=NOW)
    text = path.read_text().replace("status: approved", "status: executing")
    path.write_text(markdown.set_keys(text, {"rev": 3}))
    with LockHolder(lock_path(path)):
        plan = change_status(vault, plan_id, "pause", NOW, log)
        assert plan.status is PlanStatus.PAUSED
        on_disk = read_plan(vault, path).plan
        assert (on_disk.status, on_disk.rev) == (PlanStatus.PAUSED, 3)  # no rev stamp
        assert not vault.record_path("P", plan_id).exists()  # the holder's record is its own
        with pytest.raises(LockBusy) as e:
            change_status(vault, plan_id, "recover", NOW, log)
        assert str(e.value).startswith(f"{lock_path(path)} is locked by a running daemon (pid ")
    assert read_plan(vault, path).plan.status is PlanStatus.PAUSED


def test_recover_after_the_holder_died(vault, log):
    plan_id, path = new_plan(vault, "P", "T", [("run", "a"), ("run", "b")], True, NOW)
    path.write_text(markdown.set_keys(path.read_text(), {"status": "executing",
                                                          "current_index": 1, "rev": 2}))
    holder = LockHolder(lock_path(path))
    with pytest.raises(LockBusy):
        change_status(vault, plan_id, "recover", NOW, log)
    holder.release()
    plan = change_status(vault, plan_id, "recover", NOW, log)
    assert (plan.status, plan.current_index, plan.rev) == (PlanStatus.APPROVED, 1, 3)

"""`modulatio project resume` while another process holds the lock, and `python -m
modulatio_d` as a real process (the other plan commands, in this process:
tests/unit/test_plan_commands.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from vault_texts import commented_plan

from modulatio_d.store.lock import lock_path
from modulatio_d.store.plan_file import read_plan


@pytest.fixture
def plan(vault):
    path = vault.plans_dir("ESS") / "ESS-P-001.md"
    path.parent.mkdir(parents=True)
    return path


HOLDER = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def test_project_resume_refused_while_the_lock_is_held(vault, plan, run_cli):
    plan.write_text(commented_plan("executing", extra="rev: 7\n"))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_path(plan))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        before = plan.read_bytes()
        r = run_cli("project", "resume", "ESS-P-001", "--vault", vault.root)
        assert r.code == 1 and r.out == ""
        assert r.err == f"modulatio: {lock_path(plan)} is locked by a running daemon\n"
        assert plan.read_bytes() == before
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
        holder.stdout.close()

    r = run_cli("project", "resume", "ESS-P-001", "--vault", vault.root)
    assert (r.code, r.out) == (0, "ESS-P-001: approved (1/3 done)\n")
    p = read_plan(vault, plan).plan
    assert (p.status.value, p.current_index, p.rev) == ("approved", 1, 8)

    r = run_cli("project", "resume", "ESS-P-001", "--vault", vault.root)
    assert r.code == 1
    assert r.err == "modulatio: plan ESS-P-001 is approved: recover works only from executing\n"


def test_python_dash_m_and_usage_errors(vault):
    r = subprocess.run([sys.executable, "-m", "modulatio_d", "plan", "list", "--json",
                        "--vault", str(vault.root)], capture_output=True, text=True,
                       timeout=30, check=False)
    assert (r.returncode, json.loads(r.stdout)) == (0, [])
    r = subprocess.run([sys.executable, "-m", "modulatio_d", "plan", "frobnicate"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2 and "invalid choice" in r.stderr

"""A usage append that fails once costs no re-run (issue 9, defect 6).

A real daemon runs under strace, which fails one system call on the plan's
usage file (`-P` limits tracing, and so the injection, to calls on that path):
EIO or ENOSPC on the write, or EIO on the fsync after a write that went
through. The daemon tries again with the patience of a plan write: the plan
completes, every step ran once, every usage line is in the file once. EIO on
removing a step's scratch usage file does not fail the attempt either.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from helpers import PY, clean_env, events, plan, starts, write_plan

STRACE = shutil.which("strace")
pytestmark = pytest.mark.skipif(
    STRACE is None, reason="strace is not installed: THE USAGE FAULT INJECTION IS NOT TESTED "
                           "(.ci/run installs it from Debian's packages)")
PID = "P-P-001"
USAGE = '{"call_id": "c%d", "model": "m", "input_tokens": 5, "output_tokens": 1}'


def run_under_strace(dvault, path: str, syscalls: str, fault: str) -> str:
    """`modulatio daemon --once` with the first matching call on `path` failing."""
    argv = [STRACE, "-f", "-qq", "-o", "/dev/null", "-P", path, "-e", f"trace={syscalls}",
            "-e", f"inject={syscalls}:{fault}:when=1",
            PY, "-m", "modulatio_d", "daemon", "--vault", str(dvault.root),
            "--tick-seconds", "0.2", "--once"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=clean_env(),
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stderr


def two_steps(dvault):
    return write_plan(dvault, PID, [{"title": f"step {i}", "run": dvault.step(usage=[USAGE % i])}
                                    for i in (0, 1)])


@pytest.mark.parametrize("syscall, fault", [("write", "error=EIO"), ("write", "error=ENOSPC"),
                                            ("fsync", "error=EIO")])
def test_a_usage_append_failing_once_is_retried_and_costs_no_rerun(dvault, syscall, fault):
    path = two_steps(dvault)
    usage_file = path.with_suffix(".usage.jsonl")
    log = run_under_strace(dvault, str(usage_file), syscall, fault)

    assert f"cannot write {usage_file}, trying again" in log, log  # the fault did happen
    p = plan(dvault, PID)
    assert p.status.value == "completed", log
    assert [(e["index"], e["outcome"]) for e in p.reflection_log] == [(0, "ok"), (1, "ok")]
    assert len(starts(dvault, 0)) == 1 and len(starts(dvault, 1)) == 1, "a step ran again"
    lines = [json.loads(ln) for ln in usage_file.read_text().splitlines()]
    assert [ln["call_id"] for ln in lines] == ["c0", "c1"]  # each once, whatever failed
    assert not events(dvault, "plan_left")


def test_eio_removing_the_scratch_usage_file_does_not_fail_the_attempt(dvault):
    path = two_steps(dvault)
    scratch = path.with_suffix(".runs") / "0001-01.usage.jsonl"
    # store/fs/ removes it by name on its folder's descriptor, unlinkat(dirfd, name):
    # strace's -P matches that call through the folder the descriptor names.
    log = run_under_strace(dvault, str(scratch.parent), "unlink,unlinkat", "error=EIO")

    assert f"cannot remove {scratch}" in log, log
    p = plan(dvault, PID)
    assert p.status.value == "completed", log
    assert [(e["index"], e["outcome"]) for e in p.reflection_log] == [(0, "ok"), (1, "ok")]
    assert not (dvault.root / "P" / "tickets").exists() or \
        not list((dvault.root / "P" / "tickets").iterdir())
    lines = [json.loads(ln) for ln in path.with_suffix(".usage.jsonl").read_text().splitlines()]
    assert [ln["call_id"] for ln in lines] == ["c0", "c1"]

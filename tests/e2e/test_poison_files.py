"""Issue 9, defects 2 and 3: files that are not small regular files.

Defect 2: a FIFO named `X.md` in plans/ hangs the daemon for good (SIGTERM too: the
open() waits for a writer and is retried after the signal handler) and hangs
validate, status, plan list and metrics; a directory named `X.md` makes every
daemon and status, plan list, metrics exit 3. Defect 3: files are read whole before
their size is checked: an 8 GB sparse plan costs `validate` 8.4 GB, config.yaml
linked to /dev/zero kills the daemon at start (MemoryError), a usage file linked
to /dev/zero breaks `metrics`.

The fix (the issue's item 3) holds for every reader: plans, cron entries, tickets,
config, usage files, the daemon's records, heartbeats, events. So besides the
named reproducers, `test_an_odd_file_anywhere` puts one odd file of a kind
(FIFO, directory, link to /dev/zero, 160 MiB sparse file) in each of those places
at once, then runs a daemon (`--once`) and every reading command as real
processes (tests/e2e/measured.py): each must answer in time (exit 0, or 1 with a
message; no traceback), under 96 MiB of memory, and the good plan beside the odd
files must be completed; `validate` must name the odd plan, cron entry, ticket
and config. A process still running at the deadline is sent SIGABRT first, so
the failure shows its Python stack: where it hung.

Tests that fail today are xfail(strict=True) naming the defect.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from helpers import plan, wait_for, wait_started, write_plan
from measured import modulatio, problems, run_all, stuck_on_fifo

pytestmark = pytest.mark.timeout(150)
DAEMON_S = 15.0  # a daemon --once on two one-step plans: about 1 s here, alone
COMMANDS_S = 20.0  # eight commands at once: about 1.5 s here, alone
SPARSE = 160 * 1024 * 1024

# Where an odd file is put: one of each kind of file the daemon or a command reads.
# P-P-003's usage file and record: P-P-003 (approved, priority 50) is claimed first,
# so its record and usage file are read before the good plan P-P-002 runs.
PLACES = {
    "plan": "P/plans/P-P-009.md",
    "cron entry": "P/cron/P-C-009.md",
    "ticket": "P/tickets/P-P-009-T-01.md",
    "config": ".modulatio/config.yaml",
    "usage file": "P/plans/P-P-003.usage.jsonl",
    "record": ".modulatio/state/P/P-P-003.json",
    "heartbeat": ".modulatio/daemons/elsewhere.4194000.json",
    "events log": ".modulatio/events.jsonl",
}
NAMED_BY_VALIDATE = ("plan", "cron entry", "ticket", "config")


def make_odd(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
        (path / "inside.md").write_text("---\nid: x\n---\n")
    elif kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "sparse 160 MiB":
        with open(path, "wb") as f:
            f.truncate(SPARSE)
    else:
        raise AssertionError(kind)


def vault_with_good_plans(dv) -> None:
    write_plan(dv, "P-P-002", [{"title": "good", "run": "true"}], priority=10)
    write_plan(dv, "P-P-003", [{"title": "first", "run": "true"}], priority=50)
    for folder in ("cron", "tickets"):
        (dv.root / "P" / folder).mkdir(exist_ok=True)


def commands(root: Path) -> dict[str, list[str]]:
    v = ("--vault", str(root))
    return {name: modulatio(*name.split(), *v) for name in (
        "validate", "status", "metrics", "plan list", "plan show P-P-003", "cron list",
        "ticket list", "heartbeat --all")}


def daemon_once(root: Path) -> list[str]:
    return modulatio("daemon", "--vault", str(root), "--once", "--tick-seconds", "0.3")


def good_plan_status(dv) -> str:
    try:
        return plan(dv, "P-P-002").status.value
    except Exception as e:  # noqa: BLE001 - reported in the assertion message
        return f"unreadable: {e!r}"


KINDS = {
    "fifo": "defect 2: a FIFO hangs every reader (the daemon at start and at its scan, "
            "and every command)",
    "directory": "defect 2: a directory where a file is expected: exit 3 (config, usage, "
                 "events)",
    "link to /dev/zero": "defect 3: read whole before the size check (config, usage, record, "
                         "heartbeat, events): MemoryError",
    "sparse 160 MiB": "defect 3: read whole before the size check: 160 MiB and more of memory",
}


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.xfail(
    strict=True, reason=f"issue 9 {why}")) for k, why in KINDS.items()])
def test_an_odd_file_anywhere(dvault, tmp_path, kind):
    vault_with_good_plans(dvault)
    for rel in PLACES.values():
        make_odd(dvault.root / rel, kind)
    ran = run_all({"daemon --once": daemon_once(dvault.root)}, tmp_path, DAEMON_S)
    wrong = problems(ran, {"daemon --once": (0,)})
    status = good_plan_status(dvault)
    if status != "completed":
        wrong.append(f"the good plan P-P-002 is {status}, not completed")
    ran = run_all(commands(dvault.root), tmp_path, COMMANDS_S)
    wrong += problems(ran)
    validate = ran["validate"]
    for place in NAMED_BY_VALIDATE:
        name = Path(PLACES[place]).name
        if validate.code != 1 or name not in validate.out + validate.err:
            wrong.append(f"validate does not name the odd {place} {name}")
    assert not wrong, "\n\n".join(wrong)


# --- the reproducers, one by one ----------------------------------------------------

@pytest.mark.xfail(strict=True, reason="issue 9 defect 2: a FIFO plan hangs the daemon's scan "
                   "for good, SIGTERM included (the commands: test_an_odd_file_anywhere[fifo])")
def test_a_fifo_plan_neither_hangs_the_daemon_nor_its_sigterm(dvault, daemons):
    vault_with_good_plans(dvault)
    os.mkfifo(dvault.plan_path("P-P-009"))
    d = daemons(tick=0.3, env={"MODULATIO_ALLOW_ROOT": "1", "PYTHONFAULTHANDLER": "1"})
    wait_started(d, dvault)
    try:
        # Waiting stops early once the daemon is blocked in the FIFO's open(): for good.
        wait_for(lambda: good_plan_status(dvault) == "completed" or stuck_on_fifo(d.pid), 12,
                 "the good plan completed beside a FIFO plan", diag=d.log)
        assert good_plan_status(dvault) == "completed", "the daemon hangs opening the FIFO"
    finally:
        d.signal(signal.SIGTERM)
        deadline, stuck_since = time.monotonic() + 10, None
        while d.alive() and time.monotonic() < deadline:
            if not stuck_on_fifo(d.pid):
                stuck_since = None
            elif time.monotonic() - (stuck_since := stuck_since or time.monotonic()) > 2:
                break  # back in the FIFO's open() after the signal: it will never stop
            time.sleep(0.02)
        if d.alive():
            d.signal(signal.SIGABRT)  # the faulthandler says where it hangs
    assert d.wait(10) == 0, d.log()[-3000:]


@pytest.mark.xfail(strict=True, reason="issue 9 defect 2: a directory named X.md in plans/ "
                   "makes the daemon and status, plan list, metrics exit 3")
def test_a_directory_named_like_a_plan_stops_nothing(dvault, tmp_path):
    vault_with_good_plans(dvault)
    dvault.plan_path("P-P-009").mkdir()
    ran = run_all({"daemon --once": daemon_once(dvault.root)}, tmp_path, DAEMON_S)
    wrong = problems(ran, {"daemon --once": (0,)})
    if good_plan_status(dvault) != "completed":
        wrong.append(f"the good plan is {good_plan_status(dvault)}")
    wrong += problems(run_all(commands(dvault.root), tmp_path, COMMANDS_S))
    assert not wrong, "\n\n".join(wrong)


@pytest.mark.xfail(strict=True, reason="issue 9 defect 3: validate reads a sparse plan whole "
                   "before checking its size")
def test_a_huge_sparse_plan_costs_validate_no_memory(dvault, tmp_path):
    with open(dvault.plan_path("P-P-009"), "wb") as f:
        f.truncate(SPARSE)
    ran = run_all({"validate": modulatio("validate", "--vault", str(dvault.root))}, tmp_path,
                  COMMANDS_S)
    assert not problems(ran), problems(ran)
    assert ran["validate"].code == 1 and "P-P-009.md" in ran["validate"].err


@pytest.mark.xfail(strict=True, reason="issue 9 defect 3: config.yaml linked to /dev/zero "
                   "kills the daemon at start (MemoryError)")
def test_a_config_linked_to_dev_zero_is_refused_and_the_daemon_runs(dvault, tmp_path):
    vault_with_good_plans(dvault)
    make_odd(dvault.vault.config_path, "link to /dev/zero")
    ran = run_all({"daemon --once": daemon_once(dvault.root)}, tmp_path, DAEMON_S)
    assert not problems(ran, {"daemon --once": (0,)}), problems(ran)
    assert good_plan_status(dvault) == "completed"


@pytest.mark.xfail(strict=True, reason="issue 9 defect 3: a usage file linked to /dev/zero "
                   "makes metrics (and plan show) fail")
def test_a_usage_file_linked_to_dev_zero_leaves_metrics_working(dvault, tmp_path):
    vault_with_good_plans(dvault)
    make_odd(dvault.plans / "P-P-003.usage.jsonl", "link to /dev/zero")
    v = ("--vault", str(dvault.root))
    ran = run_all({"metrics": modulatio("metrics", *v),
                   "plan show": modulatio("plan", "show", "P-P-003", *v)}, tmp_path, COMMANDS_S)
    assert not problems(ran), problems(ran)
    assert "modulatio_usage_tokens_total" in ran["metrics"].out

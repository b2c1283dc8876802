"""What wakes an idle daemon before its tick: a daemon on a 30 s tick must react
to a new project, a ticket decided in its file, and an approval, within seconds."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from helpers import (
    events,
    plan,
    save_like_vim,
    settled,
    ticks,
    wait_started,
    wait_ticket,
    write_plan,
)
from waiting import wait_for

pytestmark = pytest.mark.timeout(150)
# The tick is an hour: whatever completes within the tests' waits was woken by a change,
# not by the tick, with no clock reading to be unlucky about.
TICK = 3600


def test_a_new_project_folder_is_watched_and_its_plan_picked_up(dvault, daemons):
    d = daemons(tick=TICK)
    # Its first heartbeat is written after its first scan: it then sleeps until a change
    # wakes it. (Not a move of the heartbeat after `daemon_started`: the first one may be
    # written before a probe's first look, and on this tick no other comes.)
    wait_for(ticks(d, dvault), 10, "the first heartbeat", diag=d.log)
    folder = dvault.root / "NEW" / "plans"
    folder.mkdir(parents=True)
    (folder / "NEW-P-001.md").write_text(
        "---\nid: NEW-P-001\nstatus: approved\nsub_objectives:\n  - {run: 'true'}\n---\n")
    wait_for(lambda: "status: completed" in (folder / "NEW-P-001.md").read_text(), 60,
             "the new project's plan run", diag=d.log)
    # and the new folder is watched from then on: a second plan there is picked up too
    save_like_vim(folder / "NEW-P-002.md", "---\nid: NEW-P-002\nstatus: approved\n"
                  "sub_objectives:\n  - {run: 'true'}\n---\n")
    wait_for(lambda: "status: completed" in (folder / "NEW-P-002.md").read_text(), 60,
             "the second plan run", diag=d.log)


def test_a_ticket_decided_in_its_file_wakes_the_daemon(dvault, daemons):
    write_plan(dvault, "P-P-001", [{"title": "needs a file", "run": "test -e ok"}])
    d = daemons(tick=TICK)
    wait_for(settled(dvault, "P-P-001", "paused"), 10, "paused", diag=d.log)
    ticket = wait_ticket(dvault, "P-P-001")
    (dvault.root / "P" / "ok").touch()
    save_like_vim(ticket, ticket.read_text().replace("decision: pending", "decision: approve"))
    wait_for(lambda: plan(dvault, "P-P-001").status.value == "completed", 60,
             "resumed and completed", diag=d.log)


def test_approvals_picked_up_by_an_idle_daemon_cost_no_scan(dvault, daemons):
    """The two plans its first scan finds run from that scan's list, and when the list
    runs out the daemon sleeps (candidates.py): no scan. An idle daemon then looks at a
    changed plan alone (loop.py `_sleep`): five approvals, each run to its end, and the
    one full scan is still its first. (A scan after each plan that ended, an approval
    arriving during it, was a cycle: at 100,000 plans every pickup waited 0.45 s.)
    `daemon_stopped` says how many scans a daemon made and after what."""
    for plan_id in ("P-P-001", "P-P-002"):
        write_plan(dvault, plan_id, [{"run": "true"}])
    d = daemons(tick=TICK)
    wait_started(d, dvault)
    wait_for(settled(dvault, "P-P-002", "completed"), 30, "the first two run", diag=d.log)
    for n in range(3, 8):  # the first run made .modulatio/state/: no scan for that either
        plan_id = f"P-P-{n:03d}"
        save_like_vim(dvault.vault.plan_path("P", plan_id),
                      f"---\nid: {plan_id}\nstatus: approved\n"
                      "sub_objectives:\n  - {run: 'true'}\n---\n")
        wait_for(settled(dvault, plan_id, "completed"), 30, f"{plan_id} run", diag=d.log)
    d.signal(signal.SIGTERM)
    assert d.wait(30) == 0
    (stopped,) = events(dvault, "daemon_stopped")
    assert (stopped["scans"], stopped["scans_after"]) == (1, {"the start": 1}), str(stopped) + d.log()


def test_an_approval_whose_event_the_kernel_dropped_is_found_by_a_scan(dvault, daemons):
    """The daemon reads inotify on its own thread (daemon/inotify.py): what comes while
    it cannot read waits in the kernel's queue, and past `max_queued_events` the kernel
    drops the rest and queues one overflow. Stopped (SIGSTOP) while more events than that
    come, then an approval whose own events are dropped, the daemon must scan once it
    reads the overflow, and run the plan long before its hour's tick."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    d = daemons(tick=TICK)
    wait_for(ticks(d, dvault), 10, "the first heartbeat", diag=d.log)
    project = dvault.root / "P"  # watched; files of no meaning there wake nobody
    d.signal(signal.SIGSTOP)
    try:
        for n in range(limit // 2 + 64):  # each: created, closed after writing (2 events)
            os.close(os.open(project / f"noise-{n}.txt", os.O_WRONLY | os.O_CREAT, 0o644))
        save_like_vim(dvault.vault.plan_path("P", "P-P-001"),
                      "---\nid: P-P-001\nstatus: approved\nsub_objectives:\n"
                      "  - {run: 'true'}\n---\n")
    finally:
        d.signal(signal.SIGCONT)
    wait_for(settled(dvault, "P-P-001", "completed"), 60, "the plan run", diag=d.log)
    d.signal(signal.SIGTERM)
    assert d.wait(30) == 0
    (stopped,) = events(dvault, "daemon_stopped")
    assert stopped["scans_after"].get("a change not to a plan") == 1, str(stopped) + d.log()

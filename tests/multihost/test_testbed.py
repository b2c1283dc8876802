"""The test bed itself: hosts are separate (hostname, processes), share the volume, and
locks taken on one host exclude the others; a daemon runs on a host."""

from __future__ import annotations

import json
import signal

from multihost_bed import PY
from waiting import wait_for

HOLD = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[3]):
    time.sleep(0.01)
"""

TRY = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
start = time.monotonic()
while True:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("taken %.3f" % (time.monotonic() - start))
        break
    except BlockingIOError:
        if time.monotonic() - start >= float(sys.argv[2]):
            print("blocked")
            break
        time.sleep(0.002)
"""


def test_hosts_have_their_own_names_and_share_the_volume(bed, shared_dir):
    names = [bed.run_on(h, "hostname").stdout.strip() for h in bed.hosts]
    assert names == bed.hosts
    note = shared_dir / "from-h1"
    bed.run_on("h1", "sh", "-c", f'hostname > "{note}"')
    for host in bed.hosts[1:]:
        assert bed.run_on(host, "cat", note).stdout == "h1\n"
    # The volume is mounted on the hosts only, not where the test runs.
    assert not note.exists()
    assert bed.path("h2", note).read_text() == "h1\n"


def test_a_flock_held_on_h1_blocks_h2_until_released(bed, shared_dir, tmp_path):
    lock, held, go = shared_dir / "x.lock", shared_dir / "held", shared_dir / "go"
    holder = bed.start("h1", PY, "-c", HOLD, lock, held, go, log=tmp_path / "holder.log")
    wait_for(bed.path("h1", held).exists, 20, "h1 to hold the lock", diag=holder.log)

    assert bed.run_on("h2", PY, "-c", TRY, lock, "0.5").stdout == "blocked\n"
    bed.run_on("h1", "touch", go)
    assert holder.wait(20) == 0
    took = bed.run_on("h2", PY, "-c", TRY, lock, "10").stdout.split()
    assert took[0] == "taken", took


def test_a_flock_of_a_killed_holder_on_h1_is_freed_for_h3(bed, shared_dir, tmp_path):
    lock, held, go = shared_dir / "x.lock", shared_dir / "held", shared_dir / "never"
    holder = bed.start("h1", PY, "-c", HOLD, lock, held, go, log=tmp_path / "holder.log")
    wait_for(bed.path("h1", held).exists, 20, "h1 to hold the lock", diag=holder.log)
    assert holder.inner_pid != holder.outer_pid  # it runs in h1's own PID namespace
    assert bed.run_on("h3", PY, "-c", TRY, lock, "0.3").stdout == "blocked\n"

    holder.kill()
    took = bed.run_on("h3", PY, "-c", TRY, lock, "10").stdout.split()
    assert took[0] == "taken", took
    assert bed.processes("h1") == []


def test_a_daemon_on_h2_runs_a_plan_made_on_h1(bed, shared_vault, tmp_path):
    made = bed.modulatio("h1", "plan", "new", "P", "Shared", "--step", "hostname > ran-on",
                         "--approve", "--vault", shared_vault)
    assert made.returncode == 0, made.stderr
    daemon = bed.start_daemon("h2", shared_vault, "--once", log=tmp_path / "d.log")
    assert daemon.wait(60) == 0, daemon.log()

    def shown() -> dict | None:
        out = bed.modulatio("h1", "plan", "list", "--json", "--vault", shared_vault).stdout
        plans = json.loads(out)
        return plans[0] if plans and plans[0]["status"] == "completed" else None

    wait_for(shown, 10, "h1 to see the plan completed")
    assert bed.run_on("h1", "cat", shared_vault / "P" / "ran-on").stdout == "h2\n"

    def started() -> list:  # h1's client may show h2's last lines up to ~1 s late
        log = bed.path("h1", shared_vault / ".modulatio" / "events.jsonl").read_text()
        return [(e["host"], e["pid"]) for e in map(json.loads, log.splitlines())
                if e["event"] == "daemon_started"]

    wait_for(started, 10, "h1 to see h2's daemon_started line")
    assert started() == [("h2", daemon.inner_pid)]


def test_kill_all_ends_what_a_test_started_on_a_host(bed, tmp_path):
    sleeper = bed.start("h3", "sleep", "300", log=tmp_path / "s.log")
    wait_for(lambda: bed.processes("h3"), 10, "the sleep on h3")
    assert bed.kill_all("h3", signal.SIGKILL)
    assert bed.processes("h3") == []
    assert sleeper.wait(10) != 0

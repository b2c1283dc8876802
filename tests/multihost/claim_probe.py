"""Run on a host by test_freshness_multihost.py: claim a plan the moment its lock is freed,
through this host's warm caches, with the daemon's own claim (daemon/claim.py).

argv: VAULT PLAN_ID. Until the plan's lock is free it reads the plan every 10 ms (so that
this host's client holds the version from before the holder's last write: the stale
window the freshness check is for; after 20 reads it prints a `warm` line), then calls Claimer.claim at once and prints one JSON
line: the claim's outcome, the rev its first read under the lock found and the rev the
lock notes. MULTIHOST_FRESH_READ=off replaces the claim's fresh read (`_read_fresh`) by
nothing, to show that the test fails without it."""

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from modulatio_d.core.plan import PlanStatus
from modulatio_d.core.times import utcnow
from modulatio_d.daemon import claim
from modulatio_d.daemon.poll import needs_polling
from modulatio_d.daemon.scan import Candidate
from modulatio_d.store import fs, plan_file
from modulatio_d.store.events import EventLog
from modulatio_d.store.lock import FileLock, lock_path
from modulatio_d.store.plan_file import read_plan
from modulatio_d.store.vault import Vault

vault = Vault(Path(sys.argv[1]))
path = next(vault.root.glob(f"*/plans/{sys.argv[2]}.md"))
fs.register(vault.root)
seen: dict = {}
if os.environ.get("MULTIHOST_FRESH_READ") == "off":
    claim.Claimer._read_fresh = lambda self, c, noted: None
    claim.Claimer._noted = lambda self, lock, orphan: lock.noted()


def first_read(v, p, direct=False):  # the claim's first read of the plan under the lock
    read = read_plan(v, p, direct)
    seen.setdefault("first_rev", read.plan.rev)
    seen.setdefault("first_status", read.plan.status.value)
    return read


claim.read_plan = plan_file.read_plan = first_read
probe = FileLock(lock_path(path))
deadline = time.monotonic() + 60
reads = 0
while time.monotonic() < deadline:
    reads += 1
    if reads == 20:  # the test's cue to let the holder go on
        print(json.dumps({"warm": True}), flush=True)
    try:
        read_plan(vault, path)  # keeps this host's caches warm with the version before
    except Exception:
        pass
    fd = os.open(lock_path(path), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        time.sleep(0.01)
        continue
    noted = FileLock(lock_path(path))
    noted.fd = fd
    seen["noted_rev"] = noted.noted().get("rev")
    os.close(fd)  # free again: the claim below takes it as a daemon would
    break
else:
    print(json.dumps({"outcome": "timeout"}))
    sys.exit(1)
claimer = claim.Claimer(vault, EventLog(vault.events_path), utcnow, socket.gethostname(),
                        os.getpid())
claimer.shared = needs_polling(vault.root) is not None  # as the daemon's loop sets it
got = claimer.claim(Candidate((0,), path, vault.project_of(path), PlanStatus.EXECUTING))
outcome = "claimed" if isinstance(got, claim.Claimed) else got.value
if isinstance(got, claim.Claimed):
    got.release()
print(json.dumps({"outcome": outcome, **seen}))

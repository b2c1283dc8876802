"""Test-only wrapper: run CronFirer.fire_due in a real process, with faults injected.

    python fire.py VAULT PROJECT NOW_ISO [--barrier FILE] [--until CRON_ID=ISO]

Waits for the barrier file (so that several processes start together), then
calls fire_due until every entry named by --until has last_fired_for at the
given instant (or once, without --until). Prints the kickoff ids it created,
one JSON list. Faults, from $MODULATIO_TEST_FAULT:
    die-before-advance    SIGKILL itself where last_fired_for would be written
    die-after-kickoff:N   SIGKILL itself right after its N-th kickoff file is created
    no-lock               every flock "succeeds": only O_EXCL stands between racers
The product code has no hooks: this script patches it from outside.
"""

import argparse
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

from modulatio_d.core import markdown, times
from modulatio_d.daemon import cron_firing
from modulatio_d.store import atomic
from modulatio_d.store.events import EventLog
from modulatio_d.store.lock import FileLock
from modulatio_d.store.vault import Vault

DEADLINE_S = 30


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def inject(fault: str) -> None:
    if fault == "die-before-advance":
        cron_firing.CronFirer._advance = lambda self, *a, **k: die()
    elif fault.startswith("die-after-kickoff:"):
        limit, count = int(fault.split(":")[1]), [0]
        real = atomic.write_new

        def write_new(path, data, mode=0o644):
            real(path, data, mode)
            if path.parent.name == "plans":
                count[0] += 1
                if count[0] == limit:
                    die()

        atomic.write_new = write_new
    elif fault == "no-lock":
        def try_acquire(self):
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            return True

        FileLock.try_acquire = try_acquire
    elif fault:
        sys.exit(f"unknown fault {fault!r}")


def last_fired(vault: Vault, project: str, cron_id: str) -> datetime | None:
    path = vault.cron_dir(project) / f"{cron_id}.md"
    data = markdown.load(path, path.read_text()).data
    return times.parse_time(data.get("last_fired_for"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("vault")
    ap.add_argument("project")
    ap.add_argument("now")
    ap.add_argument("--barrier")
    ap.add_argument("--until", action="append", default=[])
    args = ap.parse_args()
    inject(os.environ.get("MODULATIO_TEST_FAULT", ""))
    vault = Vault(args.vault)
    now = datetime.fromisoformat(args.now)
    targets = {k: datetime.fromisoformat(v) for k, v in (u.split("=", 1) for u in args.until)}
    deadline = time.monotonic() + DEADLINE_S
    if args.barrier:
        Path(args.barrier + f".ready.{os.getpid()}").touch()
        while not Path(args.barrier).exists():
            if time.monotonic() > deadline:
                sys.exit("barrier never opened")
            time.sleep(0.001)
    firer = cron_firing.CronFirer(vault, EventLog(vault.events_path), settle_s=0)
    created: list[str] = []
    while True:
        created += firer.fire_due(args.project, now)
        if all(last_fired(vault, args.project, c) == t for c, t in targets.items()):
            break
        if time.monotonic() > deadline:
            sys.exit(f"last_fired_for never reached {targets}")
    print(json.dumps(created))


if __name__ == "__main__":
    main()

"""Run inside `unshare -rm` by test_disk_full.py: a daemon on a vault whose disk fills up.

argv: MOUNT_DIR LOG_FILE. Mounts a 512 KiB tmpfs on MOUNT_DIR (a mount namespace
of our own, so nothing outside sees it), makes a vault there whose first step
fills the disk, runs a real daemon, frees the disk once the daemon has let the
plan go, and prints one JSON line with what happened.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from modulatio_d.ops.init import init
from modulatio_d.store.plan_file import read_plan

mount, log_file = Path(sys.argv[1]), Path(sys.argv[2])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
vault = init(mount / "vault")
plans = vault.plans_dir("P")
plans.mkdir(parents=True)
fill = "[ -e ../filled ] || { touch ../filled; dd if=/dev/zero of=../fill bs=4k 2>/dev/null; }; true"
(plans / "P-P-001.md").write_text(
    "---\nid: P-P-001\nstatus: approved\nsub_objectives:\n"
    f"  - {{title: fill the disk, run: {json.dumps(fill)}}}\n"
    "  - {title: after, run: echo done > done.txt}\n---\n")


def wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def status() -> str:
    try:
        return read_plan(vault, plans / "P-P-001.md").plan.status.value
    except Exception as e:  # noqa: BLE001 - reported, not raised: the file must always parse
        return f"unreadable: {e}"


with open(log_file, "w") as log:
    daemon = subprocess.Popen([sys.executable, "-m", "modulatio_d", "daemon", "--vault",
                               str(vault.root), "--tick-seconds", "0.3"], stderr=log,
                              # root inside the user namespace: the daemon's opt-in
                              env={**os.environ, "MODULATIO_ALLOW_ROOT": "1"})
left = wait_for(lambda: "left as it is for now" in log_file.read_text(), 30)
statuses_while_full = {status() for _ in range(5)}
alive_while_full = daemon.poll() is None
(vault.root / "fill").unlink()
completed = wait_for(lambda: status() == "completed", 30)
alive_after = daemon.poll() is None
daemon.send_signal(signal.SIGTERM)
code = daemon.wait(30)
print(json.dumps({"left": left, "alive_while_full": alive_while_full,
                  "statuses_while_full": sorted(statuses_while_full),
                  "completed": completed, "alive_after": alive_after, "exit": code,
                  "done": (vault.project_dir("P") / "done.txt").exists(),
                  "fills": os.path.exists(vault.root / "filled")}))

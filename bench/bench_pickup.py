"""Pickup latency: a person saves `status: approved` -> the file says `executing`.

A real `modulatio daemon --tick-seconds 30` idles on a vault of BENCH_PLANS
finished plans. Each round saves an approved one-step plan the way editors do
(temp file + rename) and polls the file until the daemon's claim shows. The
baseline, measured in the same run on the same folder: rename -> a watchdog
observer in this process sees the event (the notification floor).
Target (issue 3): median under 50 ms; issue 12: under 15 ms at BENCH_PLANS=100000.
BENCH_VAULT_CACHE=<folder> keeps the generated vault for the next run (bench/vaultgen.py).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bytecode import compile_package  # noqa: E402
from vaultgen import vault_for  # noqa: E402

PLANS = int(os.environ.get("BENCH_PLANS", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))

PLAN = """---
id: {id}
title: pickup {n}
status: approved
sub_objectives:
  - {{run: "true"}}
---
"""


def save_like_editor(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.rename(tmp, path)


def wait_for(path: Path, needle: str, deadline_s: float = 10.0) -> float:
    end = time.perf_counter() + deadline_s
    while time.perf_counter() < end:
        try:
            if needle in path.read_text():
                return time.perf_counter()
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    raise TimeoutError(f"{path} never showed {needle!r}")


def notification_floor(folder: Path) -> list[float]:
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    seen: queue.SimpleQueue = queue.SimpleQueue()

    class Handler(FileSystemEventHandler):
        def on_moved(self, event):
            seen.put(time.perf_counter())

    obs = Observer()
    obs.schedule(Handler(), str(folder), recursive=True)
    obs.start()
    out = []
    try:
        for n in range(ROUNDS):
            t0 = time.perf_counter()
            save_like_editor(folder / f"floor-{n}.txt", "x")
            out.append(seen.get(timeout=10) - t0)
    finally:
        obs.stop()
        obs.join()
    return out


def forget_pick(root: Path) -> None:
    """Remove the PICK project and the daemon's state of it: a record left from a run
    before would make the next run's PICK-P-000 a stale save of a completed plan."""
    shutil.rmtree(root / "PICK", ignore_errors=True)
    shutil.rmtree(root / ".modulatio" / "state" / "PICK", ignore_errors=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = vault_for(PLANS, Path(tmp))
        forget_pick(root)  # a cached vault: what a killed run may have left
        folder = root / "PICK" / "plans"
        folder.mkdir(parents=True)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "modulatio_d", "daemon", "--vault", str(root),
             "--tick-seconds", "30", "--log-level", "warning", "--allow-root"])
        try:
            # wait until the daemon is idle: its own heartbeat exists (written after its
            # first scan; a cached vault may hold another's, left by a killed run)
            beat = root / ".modulatio" / "daemons" / f"{socket.gethostname()}.{daemon.pid}.json"
            end = time.time() + 600
            while not beat.exists() and time.time() < end:
                time.sleep(0.01)
            assert beat.exists(), "the daemon did not finish its first scan in 600 s"
            lat = []
            for n in range(ROUNDS):
                path = folder / f"PICK-P-{n:03d}.md"
                t0 = time.perf_counter()
                save_like_editor(path, PLAN.format(id=path.stem, n=n))
                lat.append(wait_for(path, "status: executing") - t0)
                wait_for(path, "status: completed")
                time.sleep(0.05)  # let the daemon fall back to idle, as a person's pace would
            floor = notification_floor(folder)
        finally:
            daemon.terminate()
            daemon.wait(30)
            forget_pick(root)  # the vault may be a cached one
        stopped = [json.loads(line) for line in (root / ".modulatio" / "events.jsonl")
                   .read_text().splitlines() if f'"pid": {daemon.pid}' in line]
        ends = [e for e in stopped if e["event"] == "daemon_stopped"]
        scans = sum(e.get("scans", 0) for e in ends)
        after = {k: v for e in ends for k, v in e.get("scans_after", {}).items()}
    m = statistics.median
    print(f"plans in vault: {PLANS}, rounds: {ROUNDS}")
    print(f"pickup   median {m(lat) * 1000:6.1f} ms  p90 "
          f"{sorted(lat)[int(len(lat) * 0.9)] * 1000:6.1f} ms  (target median < 50 ms; "
          f"< 15 ms at 100,000 plans)")
    print(f"full scans by the daemon: {scans} for {ROUNDS} pickups (an idle daemon scans "
          f"at its start and at each tick; a pickup costs none); after: {after}")
    print(f"inotify floor median {m(floor) * 1000:6.2f} ms (rename -> watchdog event, same folder)")


if __name__ == "__main__":
    compile_package()  # time the bytecode a user imports (bench/bytecode.py)
    main()

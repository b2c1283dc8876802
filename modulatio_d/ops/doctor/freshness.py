"""The checks of how soon a change is seen on this host: an inotify event for a file
written here, a replaced file read fresh through a new open(), and the offset between
this host's clock and the file times the filesystem records.
"""

from __future__ import annotations

import os
import time

from modulatio_d.core.filesystems import Tier, Verdict
from modulatio_d.ops.doctor.files import Inotify, read_retrying, write_atomic
from modulatio_d.ops.doctor.probe import Probe, no_folder
from modulatio_d.ops.doctor.report import Row

CLOCK_S = 2.0


def check_inotify(probe: Probe) -> list[Row]:
    if probe.folder is None:
        return no_folder("inotify", probe)
    try:
        watch = Inotify(probe.folder)
    except OSError as e:
        return [Row("inotify", Verdict.CAVEAT, f"no inotify watch on {probe.folder}: "
                    f"{e.strerror}", "daemons find new work only at each tick (--tick-seconds)")]
    with watch:
        start = time.monotonic()
        write_atomic(probe.own("inotify"), b"x")
        seen = None
        while seen is None and time.monotonic() - start < 2.0:
            if any(n.startswith(probe.run + ".") for n in watch.names(0.05)):
                seen = time.monotonic() - start
    if seen is None:
        return [Row("inotify", Verdict.CAVEAT, "inotify reported no event for a file written "
                    "here within 2 s", "daemons find new work only at each tick")]
    local = f"inotify saw a file written here after {seen * 1000:.1f} ms"
    data: dict[str, object] = {"latency_ms": round(seen * 1000, 1)}
    if probe.fs is not None and not probe.fs.other_hosts_invisible_to_inotify:
        return [Row("inotify", Verdict.OK, f"{local}; one host, so that is every change",
                    data=data)]
    return [Row("inotify", Verdict.CAVEAT,
                f"{local}, but it never reports changes made on other hosts: a daemon here "
                "sees a plan approved on another host only at its next tick (--tick-seconds)",
                "keep --tick-seconds short on every host (polling pickup: not yet, "
                "see docs/multi-host.md)", data)]


def check_staleness(probe: Probe) -> list[Row]:
    if probe.folder is None:
        return no_folder("cache staleness", probe)
    path = probe.own("fresh")
    write_atomic(path, b"1")
    read_retrying(path)
    start = time.monotonic()
    write_atomic(path, b"2")
    lag = None
    while time.monotonic() - start < 5.0:
        if read_retrying(path) == b"2":
            lag = time.monotonic() - start
            break
        time.sleep(0.001)
    if lag is None:
        return [Row("cache staleness", Verdict.UNSAFE, "a file replaced here still read as "
                    "its old version through a new open() 5 s later",
                    "the daemons would act on old state; use another filesystem")]
    here = f"a file replaced here read fresh through a new open() after {lag * 1000:.1f} ms"
    data: dict[str, object] = {"reread_ms": round(lag * 1000, 1)}
    if probe.fs is not None and probe.fs.tier is Tier.LOCAL:
        return [Row("cache staleness", Verdict.OK, here, data=data)]
    hint = "measure it with `modulatio doctor --peer` on two hosts"
    if probe.mount is not None and probe.mount.fstype == "fuse.glusterfs":
        hint = ("set the volume's performance.stat-prefetch and performance.open-behind off "
                "(on the test bed: up to 1 s stale before, under 0.05 s after); " + hint)
    return [Row("cache staleness", Verdict.CAVEAT,
                f"{here}; another host may read it up to about 1 s late from its client "
                "caches (not measured from one host)", hint, data)]


def check_clock(probe: Probe) -> list[Row]:
    if probe.folder is None:
        return no_folder("clock offset", probe)
    path = probe.own("clock")
    before = time.time()
    write_atomic(path, b"t")
    after = time.time()
    mtime = os.stat(path).st_mtime
    offset = round(mtime - (before + after) / 2, 3) + 0.0  # + 0.0: no "-0.000"
    where = ("the file server's clock" if probe.fs is not None and probe.fs.tier is not
             Tier.LOCAL else "file times")
    text = f"{where} and this host's differ by {offset:+.3f} s (a file's mtime just written)"
    data: dict[str, object] = {"offset_s": offset}
    if abs(offset) <= CLOCK_S:
        return [Row("clock offset", Verdict.OK, text, data=data)]
    return [Row("clock offset", Verdict.CAVEAT, text + ": cron fires, heartbeat ages and "
                "durations read from files will be off by that much",
                "run NTP (chrony, systemd-timesyncd) on every host and on the file server",
                data)]

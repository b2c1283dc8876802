"""Run on a host by test_append_multihost.py and test_replace_multihost.py: appends to,
replaces and reads one file of the shared volume.

argv: FOLDER (registered as a root, as a vault's would be), then either nothing: commands
on stdin, one a line, each answered by one line `ok ...` (or `error ...`), so that the test
orders what two hosts do to one file exactly:
- `stat NAME`: stat the file (its size is then in this host's attribute cache);
- `open NAME`: open it for appending as store/fs/ append does (open, fstat), and keep it;
- `finish TEXT`: on the descriptor `open` kept, what append does next (flock, the write,
  fdatasync), then close; answers the end of the file as this host's client saw it under
  the flock, before the write (lseek SEEK_END);
- `append NAME TEXT`: store/fs/ append of TEXT and a newline, flushed, as events.jsonl's;
- `replace NAME TEXT`: TEXT written to a new file renamed over NAME;
- `replaceloop NAME SECONDS`: `replace` with a plan's text again and again (once at
  least), answering how many times;
- `scanloop SECONDS`: the daemon's scan of FOLDER/vault again and again (`scan_loop`);
- `readloop NAME SECONDS`: plain reads of NAME again and again, answering what failed
  (`read_loop`);
or `NAME N TAG`: append N lines `TAG-k-xxx...` of one length as fast as it can, print one
JSON line of what failed (MULTIHOST_APPEND_LOCK=off: without the flock)."""

import errno
import fcntl
import json
import os
import sys
import time
from datetime import UTC
from pathlib import Path

from modulatio_d.store import fs
from modulatio_d.store.fs import appending, writing

folder = Path(sys.argv[1])
fs.register(folder)
kept: list[int] = []
if os.environ.get("MULTIHOST_CREATE_RETRY") == "off":
    writing.CREATE_RETRIES = 0


def run(words: list[str]) -> str:
    what = words[0]
    if what == "stat":
        return str(os.stat(folder / words[1]).st_size)
    if what == "open":
        kept.append(fs.open_regular(folder / words[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT))
        return str(os.fstat(kept[-1]).st_size)
    if what == "finish":
        fd = kept.pop()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            seen = os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, (" ".join(words[1:]) + "\n").encode())
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return str(seen)
    if what == "exists":
        return str(int(os.path.exists(folder / words[1])))
    if what == "read":
        return " ".join(x[:5] for x in (folder / words[1]).read_text().splitlines())
    if what == "replace":  # as an atomic write does: a new file renamed over the name
        replace(words[1], " ".join(words[2:]))
        return ""
    if what == "replaceloop":  # `replace` NAME again and again for SECONDS, a plan each time
        end, n = time.monotonic() + float(words[2]), 0
        while n == 0 or time.monotonic() < end:  # once at least
            n += 1
            replace(words[1], plan(Path(words[1]).stem, f"v{n}"))
        return str(n)
    if what == "scanloop":  # the daemon's scan of FOLDER/vault for SECONDS
        return json.dumps(scan_loop(float(words[1])))
    if what == "readloop":  # NAME read plainly for SECONDS
        return json.dumps(read_loop(words[1], float(words[2])))
    if what == "append":
        fs.append(folder / words[1], (" ".join(words[2:]) + "\n").encode(), flush=True)
        return ""
    raise ValueError(f"unknown command {what!r}")


def replace(name: str, text: str) -> None:
    tmp = folder / (name + ".new")
    tmp.write_text(text + "\n")
    os.rename(tmp, folder / name)


def plan(plan_id: str, body: str) -> str:
    """An approved one-step plan's text (a file the scan offers)."""
    return (f"---\nid: {plan_id}\ntitle: A plan\nstatus: approved\npriority: 50\n"
            f"sub_objectives:\n  - one\ncurrent_index: 0\nreflection_log: []\n---\n{body}")


def scan_loop(seconds: float) -> dict[str, object]:
    """The daemon's scan (daemon/scan.py) of the vault FOLDER/vault, pass after pass for
    `seconds`, a new scanner every 20 passes (a first scan reads as a daemon starting
    does): how many passes, what each plan was offered in, what was told, what raised."""
    from datetime import datetime, timedelta

    from modulatio_d.daemon.scan import Scanner
    from modulatio_d.store.vault import Vault

    told: list[str] = []
    vault = Vault(folder / "vault")
    offered: dict[str, int] = {}
    raised: dict[str, int] = {}
    end, passes = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        if passes % 20 == 0:
            scanner = Scanner(vault, None, lambda kind, **f: told.append(f"{kind} {f}"))
        passes += 1
        later = datetime.now(UTC) + timedelta(hours=1)  # every save settled
        try:
            for c in scanner.scan(later):
                offered[c.path.stem] = offered.get(c.path.stem, 0) + 1
        except Exception as e:  # noqa: BLE001 (the test shows it)
            raised[repr(e)] = raised.get(repr(e), 0) + 1
    return {"passes": passes, "offered": offered, "told": told[:5], "raised": raised}


def read_loop(name: str, seconds: float) -> dict[str, int]:
    """Plain reads of `name` (open, fstat, read, os.close) for `seconds`: how many, and how
    many failed, by call and errno (what a failed close says is counted apart)."""
    counts: dict[str, int] = {}

    def count(key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        count("reads")
        try:
            fd = os.open(folder / name, os.O_RDONLY | os.O_NONBLOCK)
            os.fstat(fd)
            os.read(fd, 4096)
        except OSError as e:
            count(f"open or read: {errno.errorcode.get(e.errno, e.errno)}")
            continue
        try:
            os.close(fd)
        except OSError as e:
            count(f"close: {errno.errorcode.get(e.errno, e.errno)}")
    return counts


def many(name: str, n: int, tag: str) -> None:
    if os.environ.get("MULTIHOST_APPEND_LOCK") == "off":
        appending._lock_for_append = lambda fd: None
    errors: dict[str, int] = {}
    for k in range(n):
        try:
            fs.append(folder / name, (f"{tag}-{k:05d}-" + "x" * 100 + "\n").encode(),
                      flush=True)
        except OSError as e:
            key = errno.errorcode.get(e.errno, str(e.errno))
            errors[key] = errors.get(key, 0) + 1
    print(json.dumps({"tag": tag, "errors": errors}), flush=True)


def race(prefix: str, rounds: int, t0: float, step: float, tag: str) -> None:
    """Round k: at t0 + k * step (this machine's clock: every host shares it), append a
    line to the new file PREFIX.k, as every other racer does at the same instant."""
    failed = []
    for k in range(rounds):
        pause = t0 + k * step - time.time()
        if pause > 0:
            time.sleep(pause)
        try:
            fs.append(folder / f"{prefix}.{k}", f"{tag}-{k:05d}\n".encode(), flush=True)
        except OSError as e:
            failed.append([k, errno.errorcode.get(e.errno, str(e.errno))])
    print(json.dumps({"tag": tag, "failed": failed}), flush=True)


if len(sys.argv) > 6:
    race(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    sys.exit(0)
if len(sys.argv) > 2:
    many(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    sys.exit(0)
for line in sys.stdin:
    try:
        print("ok", run(line.split()), flush=True)
    except Exception as e:  # noqa: BLE001 (the test shows it)
        print("error", repr(e), flush=True)

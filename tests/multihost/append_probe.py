"""Run on a host by test_append_multihost.py: appends to one file of the shared volume.

argv: FOLDER (registered as a root, as a vault's would be), then either nothing: commands
on stdin, one a line, each answered by one line `ok ...` (or `error ...`), so that the test
orders what two hosts do to one file exactly:
- `stat NAME`: stat the file (its size is then in this host's attribute cache);
- `open NAME`: open it for appending as store/fs/ append does (open, fstat), and keep it;
- `finish TEXT`: on the descriptor `open` kept, what append does next (flock, the write,
  fdatasync), then close; answers the end of the file as this host's client saw it under
  the flock, before the write (lseek SEEK_END);
- `append NAME TEXT`: store/fs/ append of TEXT and a newline, flushed, as events.jsonl's;
or `NAME N TAG`: append N lines `TAG-k-xxx...` of one length as fast as it can, print one
JSON line of what failed (MULTIHOST_APPEND_LOCK=off: without the flock)."""

import errno
import fcntl
import json
import os
import sys
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
    if what == "append":
        fs.append(folder / words[1], (" ".join(words[2:]) + "\n").encode(), flush=True)
        return ""
    raise ValueError(f"unknown command {what!r}")


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
    import time
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

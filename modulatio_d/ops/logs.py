"""`modulatio logs PLAN`: the output of a plan's steps, and the running step's as it grows.

Each attempt's output is `<plan>.runs/<index>-<attempt>.log` beside the plan
(daemon/attempt.py `step_files`). Shown in (step, attempt) order, each under a
header line; only the files asked for are opened, and each is copied in blocks,
never held whole. `--follow` then follows the newest log (store/logtail.py) and
moves to the next one as soon as it appears (the next attempt or step), until
the plan is no longer `executing` and nothing is left to read.
"""

from __future__ import annotations

import codecs
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from modulatio_d.core.peek import peek_status
from modulatio_d.store import fs
from modulatio_d.store.logtail import BLOCK, FOLLOW_POLL_S, Tail
from modulatio_d.store.vault import Vault

_NAME = re.compile(r"^(\d+)-(\d+)\.log$")
STATUS_EVERY_S = 0.5


def runs_dir(plan_path: Path) -> Path:
    return plan_path.with_suffix(".runs")


def attempts(runs: Path, index: int | None = None, attempt: int | None = None
             ) -> list[tuple[int, int, Path]]:
    """(step index, attempt, path) of each output log, in order; filtered when asked."""
    out = []
    try:
        names = fs.names(runs)
    except (FileNotFoundError, NotADirectoryError):
        return []
    for name in names:
        m = _NAME.match(name)
        if m is None:
            continue
        i, a = int(m.group(1)), int(m.group(2))
        if (index is None or i == index) and (attempt is None or a == attempt):
            out.append((i, a, runs / name))
    return sorted(out)


def header(i: int, a: int, path: Path) -> str:
    return f"==> step {i + 1} attempt {a} ({path.parent.name}/{path.name}) <=="


def executing(plan_path: Path) -> bool:
    try:
        text = fs.read(plan_path, "plan").raw.decode("utf-8", "replace")
    except OSError:
        return False
    return peek_status(text) == "executing"


def _copy(tail: Tail, out: TextIO) -> None:
    """The complete lines there when the log was opened, in blocks."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a character across blocks
    pos = 0
    while pos < tail.end:
        chunk = os.pread(tail.fd, min(BLOCK, tail.end - pos), pos)
        if not chunk:
            break
        pos += len(chunk)
        out.write(decoder.decode(chunk))
    out.write(decoder.decode(b"", final=True))
    out.flush()


def show(vault: Vault, plan_id: str, index: int | None, attempt: int | None, out: TextIO,
         follow: bool = False, running: Callable[[], bool] | None = None,
         skip: set[tuple[int, int]] | frozenset = frozenset()) -> int:
    """Print the logs (then follow them); the number of logs shown. `skip`: the
    (index, attempt) logs not to show (kickoff shows only what its run writes)."""
    _, plan_path = vault.find("plans", plan_id)
    runs = runs_dir(plan_path)
    running = running or (lambda: executing(plan_path))
    seen: set[tuple[int, int]] = set(skip)
    shown = 0
    found = attempts(runs, index, attempt)
    current: Tail | None = None  # the newest log, followed from where its copy ended
    for n, (i, a, path) in enumerate(found):
        if (i, a) in seen:
            continue
        seen.add((i, a))
        out.write(header(i, a, path) + "\n")
        shown += 1
        try:
            t = Tail(path)
        except (FileNotFoundError, fs.Refused):
            continue
        _copy(t, out)
        if follow and n == len(found) - 1:
            current = t
        else:
            _finish(t, out)
    if not follow:
        return shown
    next_look = 0.0
    while True:
        if current is not None:
            _drain(current, out)
        newer = [x for x in attempts(runs, index, attempt) if (x[0], x[1]) not in seen]
        if newer:
            i, a, path = newer[0]
            seen.add((i, a))
            if current is not None:
                _finish(current, out)
            out.write(header(i, a, path) + "\n")
            out.flush()
            shown += 1
            try:
                current = Tail(path)
                current.end = 0  # every byte of a new log is to be shown
            except (FileNotFoundError, fs.Refused):
                current = None
            continue
        now = time.monotonic()
        if now >= next_look:
            next_look = now + STATUS_EVERY_S
            if not running() and not [x for x in attempts(runs, index, attempt)
                                      if (x[0], x[1]) not in seen]:
                if current is not None:
                    _finish(current, out)
                return shown
        time.sleep(FOLLOW_POLL_S)


def _drain(tail: Tail, out: TextIO) -> None:
    """The complete lines written since the last look."""
    wrote = False
    for line in tail.follow(stop=lambda: True, sleep=lambda s: None):
        out.write(line.decode("utf-8", "replace") + "\n")
        wrote = True
    if wrote:
        out.flush()


def _finish(tail: Tail, out: TextIO) -> None:
    """Everything left of a log that will not grow any more, then close it."""
    _drain(tail, out)
    rest = tail.rest()
    if rest:
        out.write(rest.decode("utf-8", "replace") + ("" if rest.endswith(b"\n") else "\n"))
    out.flush()
    tail.close()

"""The audit log `.modulatio/events.jsonl`: one JSON line per transition.

Every line is written by one os.write on a descriptor opened with O_APPEND,
under an flock of the file (store/fs/ append): lines from several daemons never
interleave, on one host or across the hosts of a network filesystem, where
O_APPEND alone tore lines. The file is opened through
store/fs/: a link (to a person's ~/.bashrc, say) is refused, never written
through, and so is anything but a regular file with one link. Fields: `ts` (UTC), `event`,
`id`, `host`, `pid`, then the event's own (plan, project, index, attempt, ...).

Rotation (the one scheme; every reader goes through `files`/`read_counted`):
- The live log is `.modulatio/events.jsonl`. When a writer has appended
  ROTATE_CHECK bytes (or a quarter of `max_bytes`, if less) since it last
  looked and finds the file at or over its
  `max_bytes` (config `retention: {events_max_bytes}`, default 16 MiB), it
  renames it, in the same folder, to `events-YYYYMMDDTHHMMSSZ.jsonl` (UTC, the
  time of the rotation) with RENAME_NOREPLACE: when two daemons rotate in the
  same second the second finds the name taken and leaves the file for later.
  The next append creates a new live file. A writer that opened the old file
  just before the rename finishes its line there: no line is lost.
- Rotated files are never written again. `files(path)` lists them oldest first
  (their names sort by time), then the live file; `read`/`read_counted` read
  them all in that order, so `status`, `metrics` and `events` see one log.
- Retention (`modulatio prune`, the daemons' background prune) removes rotated
  files older than its limit (`rotated_older`); the live file is never removed.


Ids: every line carries `id`, 16 hex digits drawn at random when it is written:
unique across daemons and hosts without coordination, and the same forever (a
hook's webhook sends it as the idempotency key, `hooks replay --from ID` names
it). Lines written before ids existed have none; readers that need one use
`event_id()` (the line's segment inode and end offset).

High-level events: a `status_changed` to completed, failed or paused is followed,
in the same write, by a `plan_completed`, `plan_failed` or `plan_paused` line
with the same fields, so a hook can subscribe to what a person cares about.

Rotated files and hooks (the contract between the rotation of events.jsonl,
issue 11, and the hooks' cursors, store/hooks.py): the log is `events.jsonl`
plus rotated files beside it named `events-YYYYMMDDTHHMMSSZ.jsonl`
(`rotated_name`), plain JSON lines, made only by renaming events.jsonl (never
by copying: the rename keeps the inode, which is how a cursor finds its file
again); `files()` lists them oldest first, the live log last. A rotation must
not remove or compress a file that a hook's cursor still points into
(store/hooks.oldest_needed()); if one is removed anyway, the hook resumes at
the oldest file left and says what it skipped. A writer that opened the live
file just before the rename finishes its line in the rotated one: a deliverer
moves on from a rotated file only once it has been still for ROTATED_STILL_S.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from modulatio_d.core.times import format_time, utcnow
from modulatio_d.store import fs, mounts

log = logging.getLogger("modulatio.events")

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
"""Size at which the live events.jsonl is rotated."""
ROTATE_CHECK = 64 * 1024
"""Bytes a writer appends between two looks at the live file's size."""
_ROTATED = re.compile(r"events-(\d{8}T\d{6}Z)\.jsonl")


def rotated_name(at: datetime) -> str:
    return f"events-{at.strftime('%Y%m%dT%H%M%SZ')}.jsonl"


def rotated_at(name: str) -> datetime | None:
    """The rotation time a rotated file's name carries; None for other names."""
    m = _ROTATED.fullmatch(name)
    if m is None:
        return None
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def files(path: Path) -> list[Path]:
    """The rotated logs beside the live `path`, oldest first, then `path` itself."""
    try:
        rotated = sorted(n for n in fs.names(path.parent) if rotated_at(n) is not None)
    except (FileNotFoundError, NotADirectoryError, fs.Refused):
        rotated = []
    return [path.parent / n for n in rotated] + [path]


def rotate(path: Path, at: datetime, max_bytes: int) -> Path | None:
    """Rename the live log to its dated name when it is at least `max_bytes` long."""
    try:
        if fs.stat_of(path).st_size < max_bytes:
            return None
        dest = path.parent / rotated_name(at)
        fs.rename_new(path, dest)
    except FileExistsError:
        return None  # another writer rotated this second: later
    except FileNotFoundError:
        return None
    return dest


class EventLog:
    def __init__(self, path: Path, clock: Callable[[], datetime] = utcnow,
                 max_bytes: int = DEFAULT_MAX_BYTES, flush: bool | None = None):
        self.path = path
        # On a network filesystem every line reaches the file server before the append's
        # flock is let go (store/fs/ append): else another host's line can take its place.
        # None: found out at the first append (store/mounts.py); a local disk pays nothing.
        self.flush = flush
        self.clock = clock
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.max_bytes = max_bytes
        self._since = ROTATE_CHECK  # look at the first append
        self._held: list[bytes] | None = None  # lines told inside together(), not yet written

    def __call__(self, event: str, **fields: object) -> None:
        ts = format_time(self.clock())
        line = {"ts": ts, "event": event, "id": new_id(), "host": self.host, "pid": self.pid,
                **fields}
        data = (json.dumps(line, default=str, sort_keys=False) + "\n").encode()
        high = HIGH_LEVEL.get(str(fields.get("status"))) if event == "status_changed" else None
        if high is not None:
            data += (json.dumps({**line, "event": high, "id": new_id()}, default=str)
                     + "\n").encode()
        if self._held is not None:  # inside together(): written with the others at its end
            self._held.append(data)
            return
        self._write(data, line)

    @contextmanager
    def together(self) -> Iterator[None]:
        """The lines of the events told inside written in one append at its end (a claim's
        `claimed` and `status_changed`: one open, lock and write, not two)."""
        if self._held is not None:
            yield
            return
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            if held:
                self._write(b"".join(held), {"events": len(held)})

    def write_held(self) -> None:
        """Write the lines held inside together() now (its caller is about to wait: a
        write tried again later), holding on after them."""
        if self._held:
            held, self._held = self._held, []
            self._write(b"".join(held), {"events": len(held)})

    def _write(self, data: bytes, line: dict) -> None:
        if self.flush is None:
            self.flush = mounts.shared_kind(self.path.parent) is not None
        try:
            fs.append(self.path, data, flush=self.flush)
        except fs.Refused as e:  # a planted link: told, never written through
            log.warning("event not recorded: %s: %s", e, line)
            return
        except OSError as e:  # disk full, say: the audit line is lost, the work goes on
            log.warning("could not append to %s (%s): %s", self.path, e.strerror, line)
            return
        self._since += len(data)
        if self._since >= min(ROTATE_CHECK, self.max_bytes // 4):
            self._since = 0
            try:
                done = rotate(self.path, self.clock(), self.max_bytes)
            except OSError as e:  # a refused link included: the live file goes on growing
                log.warning("could not rotate %s: %s", self.path, e)
                return
            if done is not None:
                log.info("rotated %s to %s", self.path, done.name)


HIGH_LEVEL = {"completed": "plan_completed", "failed": "plan_failed", "paused": "plan_paused"}
"""status_changed to these statuses is followed by these events (see the module doc)."""
ROTATED_STILL_S = 2.0
"""A rotated file unchanged this long gets no more lines: a reader may move on."""

def new_id() -> str:
    return secrets.token_hex(8)


def event_id(event: dict, inode: int, end: int) -> str:
    """The line's `id`; for a line written before ids existed, one made of where it is."""
    found = event.get("id")
    return found if isinstance(found, str) and found else f"at-{inode}-{end}"


READ_BATCH = 4 * 1024 * 1024


def read_from(path: Path, start: int, most: int = READ_BATCH,
              ) -> tuple[int, list[tuple[int, dict | None]]]:
    """(the segment's inode, [(end offset, event or None when unreadable)]) for each whole
    line of `path` from byte `start` on, reading at most `most` bytes (call again from the
    last end for more). A last line without its newline is a write in progress: left for
    the next read. FileNotFoundError; ValueError when the file is shorter than `start`."""
    fd = fs.open_regular(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if start > st.st_size:
            raise ValueError(f"{path} is shorter ({st.st_size} bytes) than the cursor {start}")
        data = os.pread(fd, min(most, st.st_size - start), start) if st.st_size > start else b""
    finally:
        fs.close(fd)
    out: list[tuple[int, dict | None]] = []
    at = 0
    while True:
        nl = data.find(b"\n", at)
        if nl < 0:
            break
        line = data[at:nl]
        at = nl + 1
        event = None
        if len(line) <= fs.LIMITS["event line"] and line.strip():
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):
                event = None
        out.append((start + at, event if isinstance(event, dict) else None))
    if not out and len(data) >= most:  # one line longer than a batch: skipped, unread
        out.append((start + len(data), None))
    return st.st_ino, out


def read(path: Path, names: tuple[str, ...] = ()) -> list[dict]:
    """The log's well-formed lines, oldest first; with `names`, only those events."""
    return read_counted(path, names)[0]


_ANY_EVENT = re.compile(rb'"event"\s*:')


def read_counted(path: Path, names: tuple[str, ...] = ()) -> tuple[list[dict], int]:
    """(the log's well-formed lines, how many lines are unreadable), oldest first,
    across its rotated files (`files`), then the live file.
    """
    for _ in range(3):  # a rotation while we read: its lines are in a new file; read again
        listed = files(path)
        out: list[dict] = []
        bad = 0
        for one in listed:
            lines, unreadable = read_one(one, names)
            out.extend(lines)
            bad += unreadable
        if files(path) == listed:
            break
    return out, bad


def read_one(path: Path, names: tuple[str, ...] = ()) -> tuple[list[dict], int]:
    """(one file's well-formed lines, how many lines are unreadable), oldest first.

    A file only grows (it is rotated by renaming: every writer opens it with
    O_APPEND per line); it is read line by line up to its size when opened, a
    line over 64 KiB skipped unread; with `names`, a regex on the raw line skips
    other events before any JSON is decoded. Unreadable lines are skipped and
    counted: over the limit, not JSON, not an object, or not even naming an
    event (a line skipped by the regex is decoded only when it matches, so a
    broken line of an event not asked for counts only when it names no event at
    all). The last line is never counted: it may be a daemon's write in
    progress. A log that is a link or not a regular file reads as empty.
    """
    wanted = re.compile(rb'"event"\s*:\s*"(?:' + b"|".join(re.escape(n.encode()) for n in names)
                        + rb')"') if names else None
    out = []
    bad = 0
    try:
        pending = 0  # the latest line's badness: counted once another line follows it
        for _, line in fs.lines(path, "event line"):
            bad, pending = bad + pending, 0
            if line is None:
                pending = 1  # over the limit, skipped unread
                continue
            if wanted is not None and wanted.search(line) is None:
                pending = int(bool(line.strip()) and _ANY_EVENT.search(line) is None)
                continue
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: [[[[... nested deep
                pending = int(bool(line.strip()))
                continue
            if isinstance(event, dict) and (not names or event.get("event") in names):
                out.append(event)
            elif not isinstance(event, dict):
                pending = 1
    except FileNotFoundError:
        pass
    except fs.Refused as e:
        log.warning("events not read: %s", e)
    return out, bad

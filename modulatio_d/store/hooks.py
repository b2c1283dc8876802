"""A hook's files: its lock, its cursor, its dead letters, its secret, its ticket.

    <vault>/.modulatio/hooks/<name>.lock          one deliverer at a time (flock)
    <vault>/.modulatio/hooks/<name>.cursor.json   where delivery stands
    <vault>/.modulatio/hooks/<name>.dead.jsonl    events given up on, one a line
    <vault>/.modulatio/hooks/<name>.replay.json   a replay asked for while a deliverer
                                                  holds the lock (it applies it)

The cursor (written atomically, only by the holder of the hook's lock, and only
after the delivery it records succeeded) names the last event handled: its
segment (`segment`, the file name; `inode`, which a rotation's rename keeps),
the byte offset just past its line (`offset`) and its id (`id`). The next
delivery starts there. Finding it again (`locate`): the segment with that inode
(a rotation renamed the live log: same inode, new name), checked by reading the
line that ends at `offset` and finding the id in it; failing that (a restored
copy, an inode reused), the segment holding a line with that id; failing that
(the segment was pruned), the oldest segment left, from its start, and the
caller says what was skipped. A cursor with no `id` (a replay's, or a new
hook's) is trusted by inode and offset alone. A hook without a cursor starts
at the end of the live log: a hook added today does not replay the past
(`modulatio hooks replay` does, on request).

Every cursor write carries `seq`, one more than the last, and the deliverer
notes the cursor in the hook's lock file as well (daemon/hook_worker.py): the
next holder, maybe on another host whose cache still serves an older cursor
file, goes on from the note when its `seq` is higher (as a plan's claimer reads
the rev noted in the plan's lock, store/lock.py).

Retry state lives in the cursor too (`failures`, `retry_at` as a UTC time), so
a deliverer that takes over after a restart keeps the backoff and the count.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from modulatio_d.core import markdown
from modulatio_d.core.errors import BadFile
from modulatio_d.core.hooks import HookSpec
from modulatio_d.core.times import format_time
from modulatio_d.store import atomic, events, fs
from modulatio_d.store import secrets as secrets_mod
from modulatio_d.store.secrets import SecretUnusable  # noqa: F401 (callers catch it here)
from modulatio_d.store.vault import Vault, create_numbered, next_number


def folder(vault: Vault) -> Path:
    return vault.meta / "hooks"


def lock_path(vault: Vault, name: str) -> Path:
    return folder(vault) / f"{name}.lock"


def cursor_path(vault: Vault, name: str) -> Path:
    return folder(vault) / f"{name}.cursor.json"


def dead_path(vault: Vault, name: str) -> Path:
    return folder(vault) / f"{name}.dead.jsonl"


def replay_path(vault: Vault, name: str) -> Path:
    return folder(vault) / f"{name}.replay.json"


def take_replay(vault: Vault, name: str) -> dict | None:
    """The cursor a replay asked for, taken (renamed away first, so a request written
    while this one is applied is not lost with it); None when none waits."""
    path = replay_path(vault, name)
    taken = path.with_name(path.name + ".taken")
    try:
        fs.rename(path, taken)
    except FileNotFoundError:
        return None
    try:
        cursor = json.loads(fs.read(taken, "heartbeat").raw)
    except (OSError, ValueError, RecursionError):
        cursor = None
    fs.unlink(taken, missing_ok=True)
    return cursor if isinstance(cursor, dict) and isinstance(cursor.get("offset"), int) \
        else None


def read_cursor(vault: Vault, name: str) -> dict | None:
    """The hook's cursor; None when it has none (or it is unreadable: logged by the caller
    as a fresh start would be wrong, so it raises BadFile then)."""
    path = cursor_path(vault, name)
    try:
        raw = fs.read(path, "heartbeat").raw
    except FileNotFoundError:
        return None
    try:
        cursor = json.loads(raw)
        if not (isinstance(cursor, dict) and isinstance(cursor.get("offset"), int)):
            raise ValueError("not a cursor")
    except (ValueError, RecursionError) as e:
        raise BadFile(path, f"the cursor is unreadable ({e})", None,
                      f"set it with `modulatio hooks replay {name} --from ID`") from None
    return cursor


def write_cursor(vault: Vault, name: str, cursor: dict) -> None:
    fs.mkdirs(folder(vault))
    atomic.replace(cursor_path(vault, name), (json.dumps(cursor, sort_keys=True) + "\n").encode())


def end_cursor(events_path: Path) -> dict:
    """A cursor at the end of the live log: what a new hook starts from."""
    try:
        st = fs.stat_of(events_path)
        inode, size = st.st_ino, st.st_size
    except FileNotFoundError:
        inode, size = 0, 0
    return {"segment": events_path.name, "inode": inode, "offset": size, "id": None,
            "failures": 0}


def _line_before(path: Path, offset: int) -> bytes:
    fd = fs.open_regular(path, os.O_RDONLY)
    try:
        n = min(offset, fs.LIMITS["event line"] + 1)
        return os.pread(fd, n, offset - n)
    finally:
        fs.close(fd)


@dataclass(frozen=True)
class Place:
    """Where delivery goes on: `index` into the segments, byte `offset` in it."""

    segments: list[Path]
    index: int
    offset: int
    skipped: str = ""


def locate(events_path: Path, cursor: dict) -> Place:
    """Where the cursor stands among the log's segments (see the module doc)."""
    segs = events.files(events_path)
    inode, offset, wanted = cursor.get("inode"), cursor["offset"], cursor.get("id")
    needle = json.dumps(wanted).encode() if wanted else None
    for i, seg in enumerate(segs):
        try:
            st = fs.stat_of(seg)
            if st.st_ino != inode or st.st_size < offset:
                continue
            if needle is None or offset == 0:
                return Place(segs, i, offset)
            before = _line_before(seg, offset)
            last = before[:-1].rsplit(b"\n", 1)[-1]
            if before.endswith(b"\n") and re.search(rb'"id"\s*:\s*' + re.escape(needle), last):
                return Place(segs, i, offset)
        except (FileNotFoundError, fs.Refused):
            continue
    if needle is not None:
        found = find(segs, wanted, after=True)
        if found is not None:
            return found
    if inode == 0 and offset == 0:  # its file did not exist yet when the cursor was set
        names = [seg.name for seg in segs]
        at = cursor.get("segment")
        return Place(segs, names.index(at) if at in names else len(segs) - 1, 0)
    return Place(segs, 0, 0, skipped=f"the segment of cursor {cursor.get('segment')} at "
                 f"{offset} ({wanted or 'no id'}) is gone: resumed at the oldest segment left")


def find(segs: list[Path], event_id: str, after: bool) -> Place | None:
    """The place just after (or just before) the line whose id is `event_id`."""
    for i, seg in enumerate(segs):
        start = 0
        while True:
            try:
                _, lines = events.read_from(seg, start)
            except (FileNotFoundError, fs.Refused, ValueError):
                break
            if not lines:
                break
            for end, event in lines:
                if event is not None and event.get("id") == event_id:
                    return Place(segs, i, end if after else start)
                start = end
    return None


def place_cursor(place: Place, event_id: str | None, base: dict | None = None) -> dict:
    """A cursor at `place` (the end of the line with `event_id`, or None: no check)."""
    seg = place.segments[place.index]
    try:
        inode = fs.stat_of(seg).st_ino
    except FileNotFoundError:
        inode = 0
    return {**(base or {}), "segment": seg.name, "inode": inode, "offset": place.offset,
            "id": event_id, "failures": 0, "retry_at": None}


def oldest_needed(vault: Vault) -> str | None:
    """The oldest segment name any hook's cursor points into (a rotation keeps it)."""
    names = []
    for entry in fs.entries(folder(vault), ".cursor.json"):
        try:
            segment = json.loads(fs.read(entry.path, "heartbeat").raw).get("segment")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(segment, str):
            names.append(segment)
    rotated = sorted(n for n in names if events.rotated_at(n) is not None)
    return rotated[0] if rotated else (names[0] if names else None)


# --- dead letters -------------------------------------------------------------------

def add_dead_letter(vault: Vault, name: str, event: dict, error: str, attempts: int,
                    now: datetime) -> None:
    record = {"at": format_time(now), "hook": name, "attempts": attempts, "error": error,
              "event": event}
    fs.append(dead_path(vault, name), (json.dumps(record, default=str) + "\n").encode())


def dead_letters(vault: Vault, name: str) -> list[dict]:
    return events.read(dead_path(vault, name))


# --- the secret ---------------------------------------------------------------------

def secret(spec: HookSpec, vault_root: Path, environ: dict[str, str]) -> bytes | None:
    """The webhook's signing secret (None for a command hook); SecretUnusable otherwise
    (store/secrets.py: from a file outside the vault, or the deliverer's environment)."""
    return secrets_mod.read(f"hook {spec.name!r}", spec.secret_env, spec.secret_file,
                            vault_root, environ)


# --- the warning ticket ---------------------------------------------------------------

def ticket_project(vault: Vault, spec: HookSpec, event: dict) -> str | None:
    """Where a hook's ticket goes: the event's project, the filter's, or the first one."""
    project = event.get("project")
    projects = vault.projects()
    for choice in (project, *spec.projects, *projects):
        if isinstance(choice, str) and choice in projects:
            return choice
    return None


def open_ticket(vault: Vault, project: str, name: str, reason: str, details: str,
                now: datetime) -> str:
    """A warning ticket about hook `name` (its `plan` is `hook-<name>`, which no plan is:
    deciding it only closes it)."""
    plan = f"hook-{name}"
    folder_ = vault.tickets_dir(project)

    def text_for(ticket_id: str) -> str:
        keys = {"id": ticket_id, "plan": plan, "severity": "warning", "reason": reason,
                "created_at": now, "decision": "pending", "status": "open"}
        return markdown.set_keys("---\n---\n", keys) + (
            f"\n## What happened\n\n{details.rstrip()}\n\n## What to do\n\n"
            f"- See what was given up on: `modulatio hooks dead-letters {name}`.\n"
            f"- Fix the receiver (or the hook in .modulatio/config.yaml), then deliver "
            f"again: `modulatio hooks replay {name} --from ID`.\n"
            f"- Then set `decision: approve` (or decline): either only closes this "
            f"ticket.\n")

    ticket_id, _ = create_numbered(folder_, f"{plan}-T-", 2,
                                   next_number(f"{plan}-T-", (folder_,)), text_for)
    return ticket_id


def ticket_open(vault: Vault, project: str, ticket_id: str) -> bool:
    try:
        text = fs.read(vault.tickets_dir(project) / f"{ticket_id}.md", "ticket").raw
    except (OSError, fs.Refused):
        return False
    return re.search(rb"(?m)^status:\s*open\s*$", text) is not None

"""`.modulatio/pause.yaml`: the vault, or some of its projects, paused by an operator.

    vault:                       # the whole vault (absent: not paused)
      by: alice@build-1
      at: 2026-12-02T01:00:00Z
      reason: kernel upgrade
      now: false                 # true: running steps were stopped as SIGTERM would
    projects:
      SALES: {by: bob@laptop, at: 2026-12-02T01:05:00Z, reason: quarter close}

Written by `modulatio pause` and `resume` (ops/pausing.py), and a person may
edit it. Writers take the flock of `.modulatio/pause.lock` (store/lock.py),
read the file under it, refuse to change a file that does not parse (it is a
person's), and replace it atomically; a resume that leaves nothing paused
removes the file. No file: nothing is paused.

Readers (every daemon each tick, at each step boundary and beat; `status`)
look at its stat signature first and parse it only when it changed: `Watch`.
An empty file is refused like a malformed one: an editor saving in place
truncates the file first, and that instant must not read as "nothing paused".
A file that does not parse (or is empty) is refused with its line and the state read before
stays in force; when none was read (a daemon starting on a bad file) the vault
counts as paused, the safe reading of a file someone meant to write.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from modulatio_d.core import markdown, names
from modulatio_d.core.errors import BadFile, FileFault
from modulatio_d.core.times import format_time, parse_time
from modulatio_d.store import atomic, fs
from modulatio_d.store.lock import FileLock
from modulatio_d.store.vault import decode

FILE = "pause.yaml"
LOCK = "pause.lock"
MAX_REASON = 1000
LOCK_WAIT_S = 10.0


@dataclass(frozen=True)
class Pause:
    by: str
    at: datetime | None
    reason: str = ""
    now: bool = False

    def as_dict(self) -> dict:
        return {"by": self.by, "at": format_time(self.at) if self.at else None,
                "reason": self.reason, "now": self.now}

    def describe(self) -> str:
        when = f" at {format_time(self.at)}" if self.at else ""
        why = f": {self.reason}" if self.reason else ""
        return f"by {self.by}{when}{why}"


@dataclass(frozen=True)
class State:
    vault: Pause | None = None
    projects: Mapping[str, Pause] = field(default_factory=dict)
    unreadable: str | None = None
    """Set when the file could not be read and nothing before it was: all is paused."""

    def of(self, project: str | None) -> Pause | None:
        """The pause in force for a project (the vault's first), or None."""
        if self.unreadable is not None:
            return Pause("?", None, f"the pause file is refused ({self.unreadable})")
        if self.vault is not None:
            return self.vault
        return self.projects.get(project) if project else None

    @property
    def any(self) -> bool:
        return self.unreadable is not None or self.vault is not None or bool(self.projects)

    def as_dict(self) -> dict:
        return {"vault": self.vault.as_dict() if self.vault else None,
                "projects": {p: v.as_dict() for p, v in sorted(self.projects.items())},
                "unreadable": self.unreadable}


def path_of(meta: Path) -> Path:
    return meta / FILE


def load(path: Path, empty_ok: bool = False) -> State:
    """The state the file says; BadFile (with its line) when it does not parse. An empty
    file is refused too (unless `empty_ok`: a writer replacing it): an editor saving in
    place truncates it first, and that moment must not read as "nothing paused"."""
    try:
        raw = fs.read(path, "pause").raw
    except FileNotFoundError:
        return State()
    text = decode(path, raw)
    if not text.strip():
        if empty_ok:
            return State()
        raise BadFile(path, "is empty", 1, "remove it (or run `modulatio resume`) to resume; "
                      "an empty file is taken for one being written")
    data = markdown.load_mapping(path, text)
    fail = FileFault(path, lambda key: markdown.line_of(data, key))
    unknown = sorted(set(map(str, data)) - {"vault", "projects"})
    if unknown:
        fail(f"unknown keys {unknown}", unknown[0], "use vault and projects")
    vault = None if data.get("vault") is None else _pause(data["vault"], fail, "vault", None)
    projects: dict[str, Pause] = {}
    raw_projects = data.get("projects") or {}
    if not isinstance(raw_projects, dict):
        fail("projects must map project codes to pauses", "projects")
    for code, value in raw_projects.items():
        line = markdown.line_of(raw_projects, code)
        if not isinstance(code, str) or not names.is_valid(code):
            fail(f"projects: {code!r} is not a project code", "projects", line=line)
        projects[code] = _pause(value, fail, "projects", line)
    return State(vault, projects)


def _pause(value: object, fail: FileFault, key: str, line: int | None) -> Pause:
    hint = "like {by: alice, at: 2026-12-02T01:00:00Z, reason: upgrade}"
    if not isinstance(value, dict):
        fail(f"{key}: a pause must be a mapping", key, hint, line=line)
    unknown = sorted(set(map(str, value)) - {"by", "at", "reason", "now"})
    if unknown:
        fail(f"{key}: unknown keys {unknown}", key, "use by, at, reason, now", line=line)
    by, reason, now = value.get("by", "?"), value.get("reason") or "", value.get("now", False)
    at = parse_time(value.get("at")) if value.get("at") is not None else None
    if value.get("at") is not None and at is None:
        fail(f"{key}: at must be a time like 2026-12-02T01:00:00Z", key, line=line)
    if not isinstance(by, str) or not isinstance(reason, str) or len(reason) > MAX_REASON:
        fail(f"{key}: by and reason must be texts (reason up to {MAX_REASON} characters)",
             key, line=line)
    if not isinstance(now, bool):
        fail(f"{key}: now must be true or false", key, line=line)
    return Pause(by, at, reason, now)


def render(state: State) -> bytes:
    def one(p: Pause) -> str:
        # JSON strings are YAML double-quoted scalars: any text is written safely.
        at = format_time(p.at) if p.at else None
        return (f"{{by: {json.dumps(p.by)}, at: {at or 'null'}, "
                f"reason: {json.dumps(p.reason)}, now: {'true' if p.now else 'false'}}}")

    lines = ["# Written by `modulatio pause` / `modulatio resume` (docs/operations.md)."]
    if state.vault is not None:
        lines.append(f"vault: {one(state.vault)}")
    if state.projects:
        lines.append("projects:")
        lines += [f"  {code}: {one(p)}" for code, p in sorted(state.projects.items())]
    return ("\n".join(lines) + "\n").encode()


def change(meta: Path, project: str | None, pause: Pause | None) -> State:
    """Pause (`pause` given) or resume the vault (`project` None) or one project, under
    the writers' flock; the state written. A file that does not parse is refused
    (BadFile): it is a person's, to fix or remove."""
    import time

    path = path_of(meta)
    with FileLock(meta / LOCK) as lock:
        if not lock.acquire(time.monotonic() + LOCK_WAIT_S):
            raise BadFile(meta / LOCK, "another pause or resume holds it", None,
                          "try again in a moment")
        state = load(path, empty_ok=True)
        projects = dict(state.projects)
        vault = state.vault
        if project is None:
            vault = pause
        elif pause is None:
            projects.pop(project, None)
        else:
            projects[project] = pause
        new = State(vault, projects)
        if new.any:
            atomic.replace(path, render(new))
        else:
            try:
                fs.unlink(path, missing_ok=True)
            except OSError:
                atomic.replace(path, render(new))
        return new


class Watch:
    """The pause state as a daemon sees it: re-read only when the file changed."""

    def __init__(self, meta: Path):
        self.path = path_of(meta)
        self.state = State()
        self._sig: object = ()  # never a signature: the first refresh reads
        self._good = False
        self.error: BadFile | None = None  # the refusal in force, told by the caller

    def refresh(self) -> bool:
        """Look at the file; True when it changed (read again, or refused)."""
        try:
            st = fs.stat_of(self.path)
            sig: object = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except FileNotFoundError:
            sig = None
        except OSError as e:
            sig = ("unusable", str(e))
        if sig == self._sig:
            return False
        self._sig = sig
        try:
            self.state = load(self.path)
        except Exception as e:  # noqa: BLE001 (a reader's bug too: refused, never a death)
            self.error = e if isinstance(e, BadFile) else BadFile(
                self.path, f"could not be read ({type(e).__name__}: {e})")
            if not self._good:
                self.state = State(unreadable=f"{self.error}")
            return True
        self.error = None
        self._good = True
        return True

    @property
    def signature(self) -> object:
        return self._sig


def who(environ: Mapping[str, str]) -> str:
    """user@host, for the `by` of a pause."""
    import socket

    user = environ.get("SUDO_USER") or environ.get("USER") or str(os.geteuid())
    return f"{user}@{socket.gethostname()}"

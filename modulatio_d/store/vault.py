"""The one module that knows the vault's folder layout.

    <vault>/.modulatio/config.yaml                 agents, defaults, timezone
    <vault>/.modulatio/events.jsonl                audit log
    <vault>/.modulatio/daemons/<host>.<pid>.json   heartbeats
    <vault>/.modulatio/state/<PROJECT>/<id>.json   the daemon's record of its keys
    <vault>/.modulatio/doctor/                     probe files of `modulatio doctor`
    <vault>/<PROJECT>/plans/<id>.md|.lock|.usage.jsonl|.runs/
    <vault>/<PROJECT>/cron/<id>.md|.lock
    <vault>/<PROJECT>/tickets/<id>.md
    <vault>/<PROJECT>/triggers/<id>.md|.lock|.state.json

A project is any folder with a valid name holding plans/, cron/, tickets/ or triggers/.
Every file of the vault is opened through store/fs/, beneath the root's descriptor,
never through a link; person files are read through `Vault.read` (and `decode`), which
also refuse files over their kind's limit and bytes that are not UTF-8.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path

from modulatio_d.core import names
from modulatio_d.core.errors import BadFile, NotFound, UsageError, VaultNotFound
from modulatio_d.store import atomic, fs
from modulatio_d.store.fs import Snapshot

META = ".modulatio"
SETTLE_S = 2.0
"""A file changed less than this ago that does not parse is not judged yet: an
editor may be half way through writing it (VS Code truncates, then writes)."""
_KINDS = ("plans", "cron", "tickets", "triggers")
_KIND_OF_FOLDER = {"plans": "plan", "cron": "cron entry", "tickets": "ticket",
                   "triggers": "cron entry"}

MAX_BYTES = 1024 * 1024
"""Bytes a person's part of a plan, cron entry or ticket may have: the file less the
reflection_log the daemon writes into a plan (fs.LIMITS["plan"] bounds the whole)."""


class Vault:
    def __init__(self, root: Path | str):
        self.root = Path(os.path.realpath(root))
        self.meta = self.root / META
        # Every path built from self.root is opened beneath this descriptor (store/fs/).
        self.fs_root = fs.register(self.root)

    def __repr__(self) -> str:
        return f"Vault({str(self.root)!r})"

    @property
    def config_path(self) -> Path:
        return self.meta / "config.yaml"

    @property
    def events_path(self) -> Path:
        return self.meta / "events.jsonl"

    @property
    def daemons_dir(self) -> Path:
        return self.meta / "daemons"

    @property
    def doctor_dir(self) -> Path:
        return self.meta / "doctor"

    def project_dir(self, project: str) -> Path:
        return self.root / names.check("project code", project)

    def plans_dir(self, project: str) -> Path:
        return self.project_dir(project) / "plans"

    def cron_dir(self, project: str) -> Path:
        return self.project_dir(project) / "cron"

    def tickets_dir(self, project: str) -> Path:
        return self.project_dir(project) / "tickets"

    def has_kickoffs(self, project: str) -> bool:
        """Whether anything is at the project's cron/ or triggers/ (a link too: the
        daemon's firers judge it): without either there is nothing to fire."""
        return any(os.path.lexists(self.project_dir(project) / k) for k in ("cron", "triggers"))

    def plan_path(self, project: str, plan_id: str) -> Path:
        return self.plans_dir(project) / f"{names.check('plan id', plan_id)}.md"

    def records_dir(self, project: str) -> Path:
        return self.meta / "state" / names.check("project code", project)

    def record_path(self, project: str, plan_id: str) -> Path:
        return self.records_dir(project) / f"{plan_id}.json"

    def projects(self) -> list[str]:
        return [name for name in self._project_like() if names.is_valid(name)]

    def folders(self) -> list[str]:
        """Every top-level folder with a valid name: the projects, and those that
        may become one (a person making NEW/ before NEW/plans/)."""
        return sorted(e.name for e in fs.entries(self.root)
                      if e.is_dir() and names.is_valid(e.name))

    def misnamed_projects(self) -> list[str]:
        """Folders laid out like a project whose name is not a valid code: never served."""
        return [name for name in self._project_like()
                if not names.is_valid(name) and not name.startswith(".")]

    def _project_like(self) -> list[str]:
        # A folder linked in is listed too (its link is lstat'ed, never opened), so
        # that the scan, status and validate can say it is refused.
        out = []
        for e in sorted(fs.entries(self.root), key=lambda e: e.name):
            if e.is_dir() and any(_holds(os.path.join(e.path, k)) for k in _KINDS):
                out.append(e.name)
            elif e.is_symlink() and names.is_valid(e.name) and any(
                    os.path.isdir(os.path.join(e.path, k)) for k in _KINDS):
                out.append(e.name)
        return out

    def files(self, project: str, kind: str) -> Iterator[fs.Entry]:
        """The `*.md` entries of a project's plans/, cron/ or tickets/ folder (none when
        the folder is missing, a link or not a folder: `check_folder` says why)."""
        try:
            found = fs.entries(self.project_dir(project) / kind, ".md")
        except OSError:
            return
        for e in found:
            if not e.name.startswith("."):
                yield e

    def each_file(self, project: str, kind: str, fd: int | None = None,
                  known: Container[str] | None = None,
                  ) -> Iterator[tuple[str, os.stat_result | None]]:
        """files() as (name, lstat), one at a time (fs.each_entry; `fd` the folder opened
        by the caller; a name not in `known`, if given, comes with None, unstat'ed); a
        listing that fails part way ends there (the next one starts again)."""
        try:
            for name, st in fs.each_entry(self.project_dir(project) / kind, ".md", fd, known):
                if not name.startswith("."):
                    yield name, st
        except OSError:
            return

    def find(self, kind: str, item_id: str, project: str | None = None) -> tuple[str, Path]:
        """(project, path) of a plan, cron entry or ticket by id."""
        singular = {"plans": "plan", "cron": "cron entry", "tickets": "ticket",
                    "triggers": "trigger"}[kind]
        names.check(f"{singular} id", item_id)
        for p in [project] if project else self.projects():
            path = self.project_dir(p) / kind / f"{item_id}.md"
            if fs.exists(path):
                return p, path
        raise NotFound(singular, item_id, f"no {kind}/{item_id}.md in {self.root}")

    def project_of(self, path: Path) -> str:
        """The project code of a file at <vault>/<PROJECT>/<kind>/<file>."""
        return Path(path).parent.parent.name  # no link is followed: the path says it

    def read(self, path: Path | str, kind: str | None = None,
             folder_fd: int | None = None, direct: bool = False) -> tuple[Snapshot, str]:
        """A person's file (plan, cron entry, ticket: `kind`, else by its folder) and its
        text; fs.Refused for a link, a non-regular file, one over its limit. `folder_fd`:
        its folder, opened beneath the root (fs.read). `direct`: past a network
        filesystem client's caches (store/fs/ read)."""
        kind = kind or _KIND_OF_FOLDER.get(Path(path).parent.name, "plan")
        snap = fs.read(path, kind, folder_fd, direct)
        return snap, decode(path, snap.raw)

    def read_opened(self, path: Path | str, fd: int, st: os.stat_result, kind: str,
                    folder_fd: int | None = None) -> str:
        """`read`'s text of a file opened by fs.open_at (`st`: its fstat)."""
        return decode(path, fs.read_opened(fd, st, path, kind, folder_fd))

    def check_folder(self, folder: Path | str) -> None:
        """Refuse a folder that is a link, lies in one, or is not a folder (BadFile)."""
        fs.check_folder(folder)


def _holds(path: str) -> bool:
    """Whether a folder (or a link, which is then refused where it is read) is at `path`."""
    try:
        st = fs.stat_of(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)


def decode(path: Path | str, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if len(raw) > MAX_BYTES:
            text = ""  # judged by its size below
        else:
            line = raw[: e.start].count(b"\n") + 1
            raise BadFile(path, f"not UTF-8: byte {raw[e.start]:#04x} at offset {e.start}",
                          line, "save the file as UTF-8") from None
    if len(raw) > MAX_BYTES and not (text and _log_leaves_room(raw)):
        # One line scan, only for files past the limit: the daemon's log does not count.
        from modulatio_d.core import markdown  # not at import: `heartbeat` starts fast

        own = len(markdown.without_keys(text, ("reflection_log",)).encode()) if text \
            else len(raw)
        if own > MAX_BYTES:
            extra = f" ({own} without the daemon's reflection_log)" if own < len(raw) else ""
            raise BadFile(path, f"file is {len(raw)} bytes{extra}, more than the {MAX_BYTES} "
                          "allowed", None, "move long text out of the plan")
    return text


_TOP_LINE = re.compile(rb"\n[^ \t\r\n-]")  # a line at column 0 that is no list item
_CLOSING = re.compile(rb"\n(?:---|\.\.\.)[ \t]*(?:\r?\n|$)", re.M)


def _log_leaves_room(raw: bytes) -> bool:
    """The quick case of decode's check, in C: the frontmatter's `reflection_log:` key,
    its lines (indented, or `- ` items) up to the next line at column 0, and the file
    less them within MAX_BYTES. When that is not so, decode's exact line scan decides
    (and words the refusal)."""
    if not raw.startswith(b"---"):
        return False
    close = _CLOSING.search(raw, 3)
    start = raw.find(b"\nreflection_log:", 0, close.start() if close else 0) + 1
    if start == 0 or close is None:
        return False
    after = _TOP_LINE.search(raw, start, close.start())
    end = after.start() + 1 if after else close.start() + 1
    return len(raw) - (end - start) <= MAX_BYTES


def next_number(prefix: str, folders: Iterable[Path]) -> int:
    """One more than the highest N of any `<prefix>N` name (N followed by `.`, `-`
    or the end) in `folders`: how plan, cron and ticket ids are numbered. Callers
    name every folder where an id leaves a trace (lock files, the daemon's
    records, kickoffs), so an id once used is never given out again."""
    numbered = re.compile(re.escape(prefix) + r"(\d+)(?=[.-]|$)")
    numbers = [0]
    for folder in folders:
        try:
            names_here = fs.names(folder)
        except OSError:
            continue  # a linked folder: refused where it is read
        numbers += [int(m.group(1)) for n in names_here if (m := numbered.match(n))]
    return max(numbers) + 1


def create_numbered(folder: Path, prefix: str, digits: int, first: int,
                    text_for: Callable[[str], str]) -> tuple[str, Path]:
    """Create `<folder>/<prefix><N>.md` (N zero-padded to `digits`) from N = `first` up;
    (id, path) of the file made.

    Each try is an O_EXCL create of a complete file (atomic.write_new), so two
    processes counting the same `first` (next_number) never share a number: the
    loser of a race finds the name taken and takes the next one.
    """
    fs.mkdirs(folder)
    number = first
    while True:
        item_id = f"{prefix}{number:0{digits}d}"
        path = folder / f"{item_id}.md"
        try:
            atomic.write_new(path, text_for(item_id).encode())
            return item_id, path
        except FileExistsError:
            number += 1


def find_vault(explicit: str | None, environ: Mapping[str, str], cwd: Path) -> Vault:
    """--vault, else $MODULATIO_VAULT, else the nearest folder holding .modulatio/."""
    chosen = explicit or environ.get("MODULATIO_VAULT")
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_dir():
            raise UsageError(
                f"vault {path} is not a folder: create it with `modulatio init {path}`")
        return Vault(path)
    for folder in [cwd, *cwd.parents]:
        if (folder / META).is_dir():
            return Vault(folder)
    raise VaultNotFound(cwd)


def example_source() -> Path:
    """The example vault: package data in modulatio_d/example/ (vault-example/ at the top of a
    checkout links to it), found through importlib.resources."""
    source = resources.files("modulatio_d") / "example"
    # Every install pip makes is a folder on disk; a zipped one has nothing to copy from.
    if not isinstance(source, Path) or not (source / META).is_dir():
        raise UsageError("this install has no example vault (modulatio_d/example/); "
                         "reinstall the package")
    return source


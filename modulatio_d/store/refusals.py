"""Bad files, told once per version: the one way a daemon reports what it refused.

A plan, cron entry, ticket or config that cannot be used is logged at ERROR,
written to events.jsonl as `file_refused` (path relative to the vault, line,
reason, kind) and kept in `current` (path -> message); it is told again only
when its version changes (the caller says what a version is: a stat signature,
or the message itself for a folder looked at every tick). Nothing is written
to the file. `settled` says whether a file may be judged at all: one changed
less than SETTLE_S ago may be an editor half way through its save.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from modulatio_d.core.errors import BadFile
from modulatio_d.store import fs
from modulatio_d.store.vault import SETTLE_S, Vault

log = logging.getLogger("modulatio.refused")


def settled(path: Path | str, now_ts: float, settle_s: float = SETTLE_S) -> bool:
    """Whether the file last changed long enough ago to be judged (False if it is gone)."""
    try:
        return now_ts - fs.stat_of(path).st_mtime >= settle_s
    except OSError:
        return False


class Refusals:
    def __init__(self, vault: Vault, events: Callable[..., None], kind: str):
        self.vault = vault
        self.events = events
        self.kind = kind
        self.current: dict[str, str] = {}
        self._told: dict[str, object] = {}

    def tell(self, path: Path | str, project: str | None, error: BadFile,
             version: object, kind: str | None = None) -> None:
        key = str(path)
        if self._told.get(key) == version:
            return
        self._told[key] = version
        self.current[key] = str(error)
        log.error("refused %s", error)
        # A trust refusal (store/trust.py) carries the owner and mode it judged, so
        # that `status` sees a chmod or chown fix it (neither changes the mtime).
        extra = getattr(error, "event_fields", None) or {}
        self.events("file_refused", project=project, kind=kind or self.kind,
                    path=os.path.relpath(key, self.vault.root), line=error.line,
                    reason=error.reason, **extra)

    def told(self, path: Path | str, version: object) -> bool:
        """Whether this version of the file was told already."""
        return self._told.get(str(path), self) == version

    def clear(self, path: Path | str) -> None:
        """The file is fine again, or gone: a later problem is news."""
        key = str(path)
        if key in self._told:  # the common case, a good file, costs one lookup
            del self._told[key]
            self.current.pop(key, None)

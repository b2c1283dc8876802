"""A per-user cache of what commands derive from vault files, keyed by stat signature.

`plan list` on 10,000 plans read and parsed every file (seconds). The daemon keeps
each plan's stat signature (inode, size, mtime, ctime) and looks again only at
files whose signature moved; commands do the same through this cache: a row
derived from a file is kept with the file's signature, and given back while the
file's lstat (from the folder listing) shows the same one.

- Where: `$XDG_CACHE_HOME/modulatio/` (default `~/.cache/modulatio/`), one file
  per vault and use (`plan-rows-<hash of the vault's path>.marshal`), mode 0600 in
  a 0700 folder: a cache in the vault could be written by anyone who shares the
  vault, and would then lie to others (and the daemons, which parse only what they
  claim, would not fill it). Without a usable home (a system user with none, a
  read-only one) nothing is cached and every file is read.
- Format: Python's marshal of {version, code, python, rows}, rows only of plain
  values, each kept as [signature, row] with the signature a tuple (VERSION 3; 2 kept
  a list, built from the stat result attribute by attribute at every look-up). At
  100,000 plans the load was the largest part of a warm command: JSON 0.6-0.75 s a
  cache, against 0.15-0.2 s for marshal with the cyclic garbage collector paused
  while the rows are made (they hold no cycle; with it running, its passes over the
  growing heap cost more than the decoding). marshal trusts
  its input: the file is the user's own (0600 in a 0700 folder), like the shell's
  start-up files, and anything it cannot decode is an empty cache. A cache of
  another interpreter version is empty too.
- A file changed within RACY_S of being looked at is not cached: a write within
  the same mtime tick, at the same size, would otherwise show the old row (the
  "racy clean" problem of git's index).
- The cache is written atomically (temp file, rename), not durably: a lost or
  unreadable cache is an empty one.
"""

from __future__ import annotations

import gc
import hashlib
import marshal
import os
import sys
import tempfile
import time
from pathlib import Path

from modulatio_d import __version__
from modulatio_d.store.fs.reading import signature

VERSION = 3
RACY_S = 2.0


def _folder() -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        home = os.environ.get("HOME")
        if not home:
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "modulatio"


class RowCache:
    def __init__(self, vault_root: Path | str, use: str, now: float | None = None):
        folder = _folder()
        digest = hashlib.sha256(os.fsencode(str(vault_root))).hexdigest()[:16]
        self.path = folder / f"{use}-{digest}.marshal" if folder else None
        self.now = time.time() if now is None else now
        self.old: dict[str, list] = self._load()
        self.new: dict[str, list] = {}
        self.changed = False

    def _load(self) -> dict[str, list]:
        if self.path is None:
            return {}
        paused = gc.isenabled()
        gc.disable()  # rows hold no cycle: the collector's passes would only cost
        try:
            with open(self.path, "rb") as f:
                data = marshal.loads(f.read())  # load(f): a read call per value
            if data.get("version") == VERSION and data.get("code") == __version__ \
                    and data.get("python") == sys.hexversion \
                    and isinstance(data.get("rows"), dict):  # rows of another release: none
                return data["rows"]
        except (OSError, ValueError, EOFError, TypeError, AttributeError):
            pass
        finally:
            if paused:
                gc.enable()
        return {}

    def get(self, path: str, st: os.stat_result) -> dict | None:
        """The row kept for `path` while its signature is `st`'s; None when not kept (or
        kept in a shape this code does not write)."""
        hit = self.old.get(path)
        if hit is None:
            return None
        try:
            sig, row = hit
        except (TypeError, ValueError):
            return None
        if sig != signature(st) or type(row) is not dict:
            return None
        self.new[path] = hit
        return row

    def put(self, path: str, st: os.stat_result, row: dict) -> None:
        self.changed = True
        if self.now - max(st.st_mtime, st.st_ctime) > RACY_S:
            self.new[path] = [signature(st), row]

    def save(self, complete: bool = True) -> None:
        """Write the rows looked at; never raises. `complete`: every file of the vault was
        looked at, so the rows of files gone are dropped (else the others are kept)."""
        if self.path is None or not (self.changed or (complete and
                                                      len(self.new) != len(self.old))):
            return
        rows = self.new if complete else {**self.old, **self.new}
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".rows.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(marshal.dumps({"version": VERSION, "code": __version__,
                                           "python": sys.hexversion, "rows": rows}))
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except (OSError, ValueError):  # ValueError: a value marshal cannot write
            return  # no cache then: the next command reads every file
        try:  # the JSON cache of the releases before (VERSION 1): tens of MB, never read
            os.unlink(self.path.with_suffix(".json"))
        except OSError:
            pass

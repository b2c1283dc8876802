"""Installing and removing a hook in `.modulatio/config.yaml` while daemons run (the HTTP
API's POST and DELETE /v1/hooks).

The config is a person's file: it is changed with ruamel's round trip (comments, order
and quoting kept), and the whole new text is read by the config's own reader before it
is written, so a hook is refused (BadFile, with the reason the daemons would give)
before anything changes. The write is atomic.rewrite's: a person's save landing
meanwhile is kept and the change applied again on top of it. Daemons pick the new
config up at their next tick (they re-read it when its stat changes).
"""

from __future__ import annotations

import io
from pathlib import Path

from modulatio_d.core import roundtrip
from modulatio_d.core.errors import BadFile, NotFound, UsageError
from modulatio_d.store import atomic, config, fs
from modulatio_d.store.vault import Vault


def _path(vault: Vault) -> Path:
    return vault.meta / "config.yaml"


def _edit(vault: Vault, change, check=lambda cfg: None) -> config.Config:
    path = _path(vault)

    def apply(raw: bytes) -> bytes:
        text = raw.decode("utf-8") if raw else ""
        y = roundtrip.yaml()
        data = y.load(text) if text.strip() else None
        if data is None:
            from ruamel.yaml.comments import CommentedMap
            data = CommentedMap()
        if not isinstance(data, dict):
            raise BadFile(path, "is not a mapping of settings", None, "fix it by hand first")
        change(data)
        out = io.StringIO()
        y.dump(data, out)
        new = out.getvalue()
        parsed = config.parse(path, new)  # refused as a whole: BadFile
        check(parsed)  # before the write: a refused hook never reaches the file
        return new.encode(), parsed

    found: dict = {}

    def apply_bytes(raw: bytes) -> bytes:
        new, found["config"] = apply(raw)
        return new

    if fs.exists(path):
        atomic.rewrite(path, apply_bytes, kind="config")
    else:
        atomic.write_new(path, apply_bytes(b""))
    return found["config"]


def install(vault: Vault, name: str, entry: dict, replace: bool = False) -> None:
    """Add hook `name` (or replace it, with `replace`); refused as the daemons would."""
    def change(data: dict) -> None:
        from ruamel.yaml.comments import CommentedMap

        hooks = data.get("hooks")
        if hooks is None:
            hooks = data["hooks"] = CommentedMap()
        if not isinstance(hooks, dict):
            raise BadFile(_path(vault), "hooks is not a mapping", None, "fix it by hand first")
        if name in hooks and not replace:
            raise UsageError(f"a hook named {name!r} exists: remove it first, or replace it")
        hooks[name] = entry

    def check(cfg: config.Config) -> None:
        refused = [r for r in cfg.refused_hooks if f"hook {name!r}" in r.reason]
        if refused:
            raise refused[0]
    _edit(vault, change, check)


def remove(vault: Vault, name: str) -> None:
    def change(data: dict) -> None:
        hooks = data.get("hooks")
        if not isinstance(hooks, dict) or name not in hooks:
            raise NotFound("hook", name, f"not in {_path(vault)}")
        del hooks[name]
        if not hooks:
            del data["hooks"]
    _edit(vault, change)

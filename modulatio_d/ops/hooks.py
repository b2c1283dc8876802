"""`modulatio hooks list|test|replay|dead-letters`: the hooks of the vault's config.

- `rows`: each declared hook with where its delivery stands (cursor, retries, who
  delivers it, dead letters) and each refused one with why.
- `test`: one delivery of a sample event (`hook_test`) to a hook, now, from this
  process; the cursor is not touched.
- `replay`: the hook delivers again from an event on (that event included). With
  no deliverer holding the hook's lock the cursor is set here, under the lock;
  otherwise a request file is left that the deliverer applies before its next
  batch (store/hooks.py).
- `dead_letters`: what the hook gave up on.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime

from modulatio_d.core import names
from modulatio_d.core.errors import ModulatioError, NotFound, UsageError
from modulatio_d.core.hooks import HookSpec
from modulatio_d.core.times import format_time
from modulatio_d.store import atomic, config, events, fs
from modulatio_d.store import hooks as hook_files
from modulatio_d.store.lock import FileLock
from modulatio_d.store.vault import Vault


def _config(vault: Vault) -> config.Config:
    return config.load(vault.config_path)


def find_spec(vault: Vault, name: str) -> HookSpec:
    cfg = _config(vault)
    for spec in cfg.hooks:
        if spec.name == name:
            return spec
    for refused in cfg.refused_hooks:
        if f"hook {name!r}:" in refused.reason:
            raise UsageError(f"hook {name!r} is refused: {refused}")
    raise NotFound("hook", name, "declared: " + (", ".join(s.name for s in cfg.hooks)
                                                or "none (see docs/hooks.md)"))


def config_problems(vault: Vault, cfg: config.Config, environ: dict[str, str]) -> list[tuple]:
    """For `validate`: (path, reason, line, hint, severity) of each refused hook entry (an
    error: the config stays in force without it, so not a refused file) and of each webhook
    secret this shell cannot read (a warning: the daemons' user and environment may
    differ from this shell's)."""
    out: list[tuple] = [(e.path, e.reason, e.line, e.hint, "error") for e in cfg.refused_hooks]
    for spec in cfg.hooks:
        try:
            hook_files.secret(spec, vault.root, environ)
        except hook_files.SecretUnusable as e:
            out.append((vault.config_path, str(e), spec.line, "as seen from this shell",
                        "warning"))
    return out


def rows(vault: Vault, environ: dict[str, str]) -> list[dict]:
    cfg = _config(vault)
    out = []
    for spec in cfg.hooks:
        try:
            cursor = hook_files.read_cursor(vault, spec.name)
            cursor_error = None
        except ModulatioError as e:
            cursor, cursor_error = None, str(e)
        problem = None
        try:
            hook_files.secret(spec, vault.root, environ)
        except hook_files.SecretUnusable as e:
            problem = f"{e} (as seen from this shell; the daemons' environment may differ)"
        out.append({
            "name": spec.name, "valid": True, "action": spec.action, "events": list(spec.events),
            "cursor": cursor, "cursor_error": cursor_error, "problem": problem,
            "deliverer": _holder(vault, spec.name),
            "dead_letters": len(hook_files.dead_letters(vault, spec.name)),
            "replay_pending": fs.exists(hook_files.replay_path(vault, spec.name)),
        })
    for refused in cfg.refused_hooks:
        out.append({"name": _name_of(refused.reason), "valid": False, "error": str(refused)})
    return out


def _name_of(reason: str) -> str:
    return reason.split("'")[1] if reason.startswith("hook '") else "?"


def _holder(vault: Vault, name: str) -> dict | None:
    """Who holds the hook's lock (what it noted), or None when nobody does."""
    path = hook_files.lock_path(vault, name)
    if not fs.exists(path):
        return None
    probe = FileLock(path)
    if probe.try_acquire():
        probe.release()
        return None
    try:
        return json.loads(fs.read(path, "lock file").raw or b"{}")
    except (OSError, ValueError):
        return {}


def test(vault: Vault, name: str, environ: dict[str, str], now: datetime) -> dict:
    """Deliver a sample event to hook `name` once; {"event": ..., "error": None | str}."""
    spec = find_spec(vault, name)
    try:
        secret = hook_files.secret(spec, vault.root, environ)
    except hook_files.SecretUnusable as e:
        return {"event": None, "error": str(e)}
    event = {"ts": format_time(now), "event": "hook_test", "id": events.new_id(),
             "host": socket.gethostname(), "pid": os.getpid(), "hook": name, "sample": True}
    body = json.dumps(event).encode()
    from modulatio_d.daemon.hook_delivery import deliver  # urllib, ssl: only to send

    error = deliver(spec, event["id"], "hook_test", body, secret, environ, vault.root)
    return {"event": event, "error": error}


def replay(vault: Vault, name: str, event_id: str, now: datetime) -> dict:
    """Deliver again from event `event_id` on; what was done."""
    find_spec(vault, name)
    place = hook_files.find(events.files(vault.events_path), event_id, after=False)
    if place is None:
        raise UsageError(f"no event {event_id!r} in {vault.events_path} or its rotated "
                         f"segments (ids are in `modulatio hooks dead-letters {name}` and "
                         f"in events.jsonl)")
    cursor = {**hook_files.place_cursor(place, None), "from": event_id,
              "asked_at": format_time(now)}
    fs.mkdirs(hook_files.folder(vault))
    lock = FileLock(hook_files.lock_path(vault, name))
    if lock.try_acquire():
        with lock:  # one seq past both the cursor file and the last holder's note of it
            old = _old_cursor(vault, name)
            noted = lock.noted().get("cursor")
            seq = max(int(old.get("seq") or 0), int((noted or {}).get("seq") or 0)
                      if isinstance(noted, dict) else 0) + 1
            new = {**cursor, "ticket": old.get("ticket"), "seq": seq}
            hook_files.write_cursor(vault, name, new)
            lock.note_holder(host=socket.gethostname(), pid=os.getpid(), hook=name,
                             since=None, cursor=new)
        return {"applied": True, "cursor": cursor}
    atomic.replace(hook_files.replay_path(vault, name),
                   (json.dumps(cursor, sort_keys=True) + "\n").encode())
    return {"applied": False, "cursor": cursor}


def _old_cursor(vault: Vault, name: str) -> dict:
    try:
        return hook_files.read_cursor(vault, name) or {}
    except ModulatioError:
        return {}


def dead_letters(vault: Vault, name: str) -> list[dict]:
    """The hook's dead letters; also of a hook no longer declared, while its file is there."""
    try:
        find_spec(vault, name)
    except NotFound:
        if not names.is_valid(name) or not fs.exists(hook_files.dead_path(vault, name)):
            raise
    return hook_files.dead_letters(vault, name)

"""The operator's controls as `status`, `status --json` and `metrics` show them.

`control(vault, daemons)`:
- `pause`: the pause file's state (store/pause.py), or its refusal with file:line
  (the daemons keep the state they read before; at start, all paused);
- `capacity`: the config's limits (core/capacity.py), or its refusal;
- `slots`: per limit, the slots in use now and their holders (store/slots.py
  `probe`: a flock tried and released at once on each slot file);
- `waiting_for_slot`: the plans the live daemons' heartbeats say wait for a slot, less
  those holding one now (a heartbeat is up to a beat old).
Nothing is written but the per-user row cache (store/rowcache.py, `control`): what
the pause file and the config said is kept under each file's stat signature, as a
plan's row is, so a `status` with neither changed does not parse them (nor import
the YAML and config readers, a fifth of a warm 10,000-plan `status`'s start-up). A
file that is not there says what its reader says of no file (NO_PAUSE, NO_CAPACITY);
a file that cannot be looked at is read, and its error not kept.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modulatio_d.core.errors import BadFile, FileUnusable
from modulatio_d.store import fs
from modulatio_d.store.rowcache import RowCache
from modulatio_d.store.vault import Vault

PAUSE_FILE = "pause.yaml"
"""store/pause.path_of's name in .modulatio/ (held equal by the same test)."""
NO_PAUSE = {"vault": None, "projects": {}, "unreadable": None}
"""pause.State().as_dict(): no pause file (tests/unit/test_survey_cache.py holds it so)."""
NO_CAPACITY = {"vault": None, "projects": {}, "headroom": {"slots": 0, "min_priority": None},
               "closed": False}
"""capacity.Capacity().as_dict(): no config file (held so by the same test)."""


def control(vault: Vault, daemons: list[dict]) -> dict:
    kept = RowCache(vault.root, "control")
    out: dict = {"pause": _kept(kept, vault.meta / PAUSE_FILE, _pause, NO_PAUSE)}
    capacity = _kept(kept, vault.config_path, _capacity, {"capacity": NO_CAPACITY})
    kept.save()
    out["capacity"] = capacity.get("capacity", capacity)
    limits = capacity.get("capacity") or {}
    groups = []
    if limits.get("vault") is not None or limits.get("projects"):
        from modulatio_d.store import slots
        if limits.get("vault") is not None:
            groups.append(("vault", slots.vault_group(vault.meta), limits["vault"]))
        for code, limit in sorted(limits["projects"].items()):
            groups.append((f"project {code}", slots.project_group(vault.meta, code), limit))
    out["slots"] = []
    for name, folder, limit in groups:
        try:
            held = slots.probe(folder)
        except (BadFile, OSError):
            held = []
        out["slots"].append({"limit_of": name, "limit": limit, "in_use": len(held),
                             "holders": [{k: h.get(k) for k in ("slot", "plan", "project",
                                                                  "host", "pid", "priority")}
                                         for h in held]})
    waiting = set()
    for d in daemons:
        if d.get("state") == "live":
            waiting.update(d.get("waiting_for_slot") or [])
    # A heartbeat is up to a beat old; a slot's flock is now: a plan holding one waits no more.
    holding = {h["plan"] for g in out["slots"] for h in g["holders"]}
    out["waiting_for_slot"] = sorted(waiting - holding)
    return out


def _kept(cache: RowCache, path: Path, read: Callable[[Path], tuple[dict, bool]],
          absent: dict) -> dict:
    """What `read(path)` says of the file, from `cache` while its signature stands;
    `absent` when there is no file. `read` tells whether its answer may be kept."""
    try:
        st = fs.stat_of(path)
    except FileNotFoundError:
        return absent
    except (BadFile, OSError):
        return read(path)[0]  # the reader says what is wrong there, each time
    row = cache.get(str(path), st)
    if row is None:
        row, keep = read(path)
        if keep:
            cache.put(str(path), st, row)
    return row


def _pause(path: Path) -> tuple[dict, bool]:
    from modulatio_d.store import pause

    try:
        return pause.load(path).as_dict(), True
    except (BadFile, OSError) as e:
        return {"vault": None, "projects": {}, "unreadable": str(e)}, _kept_error(e)


def _capacity(path: Path) -> tuple[dict, bool]:
    """{"capacity": the limits} or {"refused": why}."""
    from modulatio_d.store import config

    try:
        return {"capacity": config.load(path).capacity.as_dict()}, True
    except (BadFile, OSError) as e:
        return {"refused": str(e)}, _kept_error(e)


def _kept_error(e: Exception) -> bool:
    """Whether a refusal is the file's own (its text, a link, its size: what its signature
    stands for), not the system's (permissions, an I/O error), which may pass."""
    return isinstance(e, BadFile) and not isinstance(e, FileUnusable)


def lines(c: dict) -> list[str]:
    """The section of `status` text."""
    out: list[str] = []
    p = c["pause"]
    if p.get("unreadable"):
        out.append(f"PAUSE FILE REFUSED: {p['unreadable']} (daemons keep the pause state "
                   f"they read before; one started since counts the vault as paused)")
    if p.get("vault"):
        out.append(f"PAUSED: the whole vault, {_who(p['vault'])}   (`modulatio resume` ends it)")
    for code, one in sorted((p.get("projects") or {}).items()):
        out.append(f"PAUSED: project {code}, {_who(one)}   (`modulatio resume --project "
                   f"{code}`)")
    cap = c["capacity"]
    if cap.get("refused"):
        out.append(f"capacity: the config is refused ({cap['refused']})")
    for g in c["slots"]:
        holders = ", ".join(f"{h.get('project')}/{h.get('plan')}" for h in g["holders"])
        out.append(f"slots of {g['limit_of']}: {g['in_use']}/{g['limit']} in use"
                   + (f" ({holders})" if holders else ""))
    if cap.get("headroom", {}).get("slots"):
        h = cap["headroom"]
        out.append(f"  headroom: the vault's last {h['slots']} slot(s) only for priority >= "
                   f"{h['min_priority']}")
    if c["waiting_for_slot"]:
        out.append("waiting for a slot: " + ", ".join(c["waiting_for_slot"]))
    return out


def _who(p: dict) -> str:
    text = f"by {p.get('by')} at {p.get('at')}"
    if p.get("reason"):
        text += f": {p['reason']}"
    if p.get("now"):
        text += " (steps stopped now)"
    return text


"""The operator's controls as `status`, `status --json` and `metrics` show them.

`control(vault, daemons)`:
- `pause`: the pause file's state (store/pause.py), or its refusal with file:line
  (the daemons keep the state they read before; at start, all paused);
- `capacity`: the config's limits (core/capacity.py), or its refusal;
- `slots`: per limit, the slots in use now and their holders (store/slots.py
  `probe`: a flock tried and released at once on each slot file);
- `waiting_for_slot`: the plans the live daemons' heartbeats say wait for a slot.
Nothing is written.
"""

from __future__ import annotations

from modulatio_d.core.errors import BadFile
from modulatio_d.store import config, pause, slots
from modulatio_d.store.vault import Vault


def control(vault: Vault, daemons: list[dict]) -> dict:
    out: dict = {}
    try:
        out["pause"] = pause.load(pause.path_of(vault.meta)).as_dict()
    except (BadFile, OSError) as e:
        out["pause"] = {"vault": None, "projects": {}, "unreadable": str(e)}
    try:
        capacity = config.load(vault.config_path).capacity
        out["capacity"] = capacity.as_dict()
    except (BadFile, OSError) as e:
        capacity = None
        out["capacity"] = {"refused": str(e)}
    groups = []
    if capacity is not None and capacity.vault is not None:
        groups.append(("vault", slots.vault_group(vault.meta), capacity.vault))
    for code, limit in sorted((capacity.projects if capacity else {}).items()):
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
    out["waiting_for_slot"] = sorted(waiting)
    return out


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


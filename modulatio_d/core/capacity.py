"""Capacity and headroom: how many plans may execute at once, as pure values.

    capacity:
      vault: 4                      # at most 4 plans executing across every daemon and host
      projects: {SALES: 2}          # at most 2 of SALES at once
      headroom: {slots: 1, min_priority: 80}   # of the vault's 4, 1 only for priority >= 80

The limits are counted in slots (store/slots.py holds the flock'd slot files):
a plan runs while it holds one slot of each limit that applies to it. Which
slots a plan may try is decided here: a project's slots 0..limit-1; the
vault's slots 0..vault-headroom-1 for every plan, and the headroom slots
vault-headroom..vault-1 after them for a plan at or above min_priority (the
normal slots first, so the headroom stays free for the next urgent plan).

`closed` admits nothing: the config could not be read and it (as far as a
cheap look can tell) sets a capacity, so no limit is known. A daemon then
waits rather than run without one ("unlimited" by accident).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NoReturn

from modulatio_d.core import markdown, names

MAX_SLOTS = 10_000
"""The largest limit: more plans than this at once is a typo, not a plan."""


@dataclass(frozen=True)
class Capacity:
    vault: int | None = None
    projects: Mapping[str, int] = field(default_factory=dict)
    headroom_slots: int = 0
    min_priority: int | None = None
    closed: bool = False

    @property
    def limited(self) -> bool:
        return self.closed or self.vault is not None or bool(self.projects)

    def project_limit(self, project: str) -> int | None:
        return self.projects.get(project)

    def vault_slots(self, priority: int) -> list[int] | None:
        """The vault's slot numbers a plan of `priority` may hold, in the order to try
        them; None when the vault has no limit."""
        if self.vault is None:
            return None
        normal = list(range(max(0, self.vault - self.headroom_slots)))
        if self.min_priority is not None and priority >= self.min_priority:
            return normal + list(range(len(normal), self.vault))
        return normal

    def as_dict(self) -> dict:
        return {"vault": self.vault, "projects": dict(self.projects),
                "headroom": {"slots": self.headroom_slots, "min_priority": self.min_priority},
                "closed": self.closed}


def parse(value: object, fail: Callable[..., NoReturn]) -> Capacity:
    """The `capacity:` value of the config; `fail(reason, key, hint)` refuses it (at the
    line of `capacity:`)."""
    if value is None:
        return Capacity()
    hint = "like capacity: {vault: 4, projects: {SALES: 2}, headroom: {slots: 1, " \
           "min_priority: 80}}"
    if not isinstance(value, dict):
        fail("capacity must be a mapping", "capacity", hint)
    unknown = sorted(set(map(str, value)) - {"vault", "projects", "headroom"})
    if unknown:
        fail(f"capacity: unknown keys {unknown}", "capacity", "use vault, projects, headroom")

    def count(v: object, what: str, line: int | None) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SLOTS:
            fail(f"capacity: {what} must be a whole number from 0 to {MAX_SLOTS}, not {v!r}",
                 "capacity", "0 runs nothing there; leave the key out for no limit", line=line)
        return v

    def at(mapping: object, key: str) -> int | None:  # the line of a nested key, if known
        return markdown.line_of(mapping, key) if isinstance(mapping, dict) else None

    vault = None if value.get("vault") is None \
        else count(value["vault"], "vault", at(value, "vault"))
    projects: dict[str, int] = {}
    raw = value.get("projects") or {}
    if not isinstance(raw, dict):
        fail("capacity: projects must map project codes to limits", "capacity", hint)
    for code, limit in raw.items():
        if not isinstance(code, str) or not names.is_valid(code):
            fail(f"capacity: {code!r} is not a project code", "capacity", hint,
                 line=at(raw, str(code)))
        projects[code] = count(limit, f"projects.{code}", at(raw, code))
    head = value.get("headroom")
    slots, min_priority = 0, None
    if head is not None:
        if not isinstance(head, dict) or set(map(str, head)) != {"slots", "min_priority"}:
            fail("capacity: headroom needs exactly slots and min_priority", "capacity", hint)
        slots = count(head["slots"], "headroom.slots", at(head, "slots"))
        mp = head["min_priority"]
        if isinstance(mp, bool) or not isinstance(mp, int):
            fail(f"capacity: headroom.min_priority must be a whole number, not {mp!r}",
                 "capacity", "plans at or above it may use the headroom",
                 line=at(head, "min_priority"))
        min_priority = mp
        if vault is None:
            fail("capacity: headroom is part of the vault's limit, and vault is not set",
                 "capacity", "add vault: N (the headroom is N's last slots)")
        if slots > vault:
            fail(f"capacity: headroom.slots ({slots}) is more than vault ({vault})",
                 "capacity", "the headroom is the vault limit's last slots")
    return Capacity(vault=vault, projects=projects, headroom_slots=slots,
                    min_priority=min_priority)

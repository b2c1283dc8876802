"""Whether a plan may start now: the operator's pause and the vault's capacity.

Each pass over the claimable plans (daemon/loop.py) first looks at the pause
file (store/pause.py: one stat, parsed only when changed). A plan of a paused
project (or any plan, the vault paused) is passed over: no claim, and no cron
kickoff fires there (cron_firing keeps its `last_fired_for`, so what came due
meanwhile follows its entry's catch-up policy at the first tick after resume).

Then, before the claim, the plan takes its slots (store/slots.py): one of its
project's limit and one of the vault's (headroom by priority,
core/capacity.py), held with the plan's lock for the whole run. A limit with
no free slot: the plan waits (`slot_wait`, told once per plan and limit while it
waits) and the daemon tries again within SLOT_RETRY_S, sooner when a slot of
this host is freed (the `freed` wake-up). A claim that then misses releases the
slots at once.

While a plan runs, `halt(project)` answers the runner at each step boundary and
each beat of a step: "drain" (paused: leave at the next step boundary, the plan
`executing` and resumable with its lock free) or "now" (`pause --now`: stop the
running step as SIGTERM would, in flight, to run again on resume). The runner
asks it at the same points as `Stop.ending()` (a SIGTERM, or a pool's drain):
one mechanism, the same step boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from modulatio_d.core.capacity import Capacity
from modulatio_d.core.errors import BadFile
from modulatio_d.daemon.scan import Candidate
from modulatio_d.store import pause, slots
from modulatio_d.store.refusals import Refusals
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.daemon")
SLOT_RETRY_S = 1.0


class Admission:
    def __init__(self, vault: Vault, events: Callable[..., None], host: str, pid: int):
        self.vault = vault
        self.events = events
        self.host = host
        self.pid = pid
        self.watch = pause.Watch(vault.meta)
        self.refusals = Refusals(vault, events, "pause")
        self.waiting: dict[str, str] = {}  # plan id -> the limit it waits for (this pass)
        self._told_wait: set[tuple[str, str]] = set()
        self._told_pause: object = None
        self._told_broken: set[str] = set()  # slot errors logged once each

    # --- pause ------------------------------------------------------------------

    def refresh(self) -> None:
        """Look at the pause file; tell a refusal or a change once."""
        if not self.watch.refresh():
            return
        if self.watch.error is not None:
            self.refusals.tell(self.watch.path, None, self.watch.error, self.watch.signature)
            if self.watch.state.unreadable:
                log.error("the pause file is refused and none was read before: the vault "
                          "counts as paused until it is fixed or removed")
            return
        self.refusals.clear(self.watch.path)
        state = self.watch.state.as_dict()
        if state != self._told_pause:
            if self._told_pause is not None or self.watch.state.any:
                log.info("pause state: %s", _describe(self.watch.state))
            self._told_pause = state

    def paused(self, project: str | None) -> pause.Pause | None:
        return self.watch.state.of(project)

    def halt(self, project: str) -> str | None:
        self.refresh()
        p = self.paused(project)
        if p is None:
            return None
        return "now" if p.now else "drain"

    def status(self, served: list[str]) -> str | None:
        """A few words for the systemd STATUS line and the heartbeat, when paused."""
        state = self.watch.state
        if state.unreadable:
            return "paused: the pause file is refused"
        if state.vault is not None:
            return f"paused (vault {state.vault.describe()})"
        mine = sorted(p for p in state.projects if p in served)
        if mine:
            return "paused: " + ", ".join(mine)
        return None

    # --- capacity ---------------------------------------------------------------

    def start_pass(self) -> None:
        """A full pass over the claimable plans begins: who waits is found again."""
        self.waiting = {}

    def take(self, c: Candidate, capacity: Capacity) -> slots.Held | None:
        """The slots `c` needs, held; None when one of its limits is full (it waits)."""
        if not capacity.limited:
            return slots.Held([])
        plan = c.path.stem
        if capacity.closed:
            return self._wait(c, "capacity unknown: the config is refused")
        priority = -c.sort_key[0] if c.sort_key else 0
        groups = []
        limit = capacity.project_limit(c.project)
        if limit is not None:
            groups.append(slots.Group(slots.project_group(self.vault.meta, c.project),
                                      tuple(range(limit)), limit, f"project {c.project}"))
        numbers = capacity.vault_slots(priority)
        if numbers is not None:
            groups.append(slots.Group(slots.vault_group(self.vault.meta), tuple(numbers),
                                      capacity.vault or 0, "vault"))
        try:
            got = slots.take_all(groups, host=self.host, pid=self.pid, plan=plan,
                                 project=c.project, priority=priority)
        except (BadFile, OSError) as e:  # a link or folder where a slot file goes, EACCES
            if str(e) not in self._told_broken:
                self._told_broken.add(str(e))
                log.error("cannot take a slot for %s: %s; plans with this limit wait until "
                          "it is fixed", plan, e)
            return self._wait(c, "slots unusable")
        if isinstance(got, slots.Group):
            return self._wait(c, got.name)
        self._told_wait = {t for t in self._told_wait if t[0] != plan}
        self.waiting.pop(plan, None)
        return got

    def _wait(self, c: Candidate, limit: str) -> None:
        plan = c.path.stem
        self.waiting[plan] = limit
        if (plan, limit) not in self._told_wait:
            self._told_wait.add((plan, limit))
            log.info("plan %s waits for a slot (%s full)", plan, limit)
            self.events("slot_wait", project=c.project, plan=plan, limit=limit)
        return None

    def retry_in(self, wait: float) -> float:
        """How long the loop may sleep while plans wait for a slot."""
        return min(wait, SLOT_RETRY_S) if self.waiting else wait


def _describe(state: pause.State) -> str:
    if not state.any:
        return "nothing paused"
    parts = []
    if state.vault is not None:
        parts.append(f"vault {state.vault.describe()}")
    parts += [f"{code} {p.describe()}" for code, p in sorted(state.projects.items())]
    return "; ".join(parts)

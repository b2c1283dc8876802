"""The plans a daemon tries between two full scans, and in which order.

Order (docs/daemon.md, "The tick"): priority (higher first), then approved_at,
then id. Several daemons on one vault would all try the same first plan: all
but one lose the race (a `claim_lost`), and each scanned the whole vault again
after every plan it ran and every race it lost. So:

- Within a class of equal priority, daemons start from different places:
  daemon k of N (the rank of its heartbeat file's name among those in
  `.modulatio/daemons/`, its own counted before it is written) tries the
  class's plans at positions k, k+N, k+2N, ... first, then k+1, k+1+N, ...,
  each run in the documented order. Between classes the order stays, and a
  daemon alone (N = 1) tries every plan exactly in order. A daemon that loses
  a race counts the heartbeats again (a peer that started since may share its
  rank) and reorders what it has left.
- After a plan ends, the daemon goes on with the rest of its last scan, each
  plan looked at alone (Scanner.look_at: one stat, a read only when the file
  changed: a plan another daemon took reads `executing` under a held lock and
  is skipped), as the idle pickup does. It scans the whole vault again when
  the list is a tick old (cron, tickets, the config and orphaned plans are
  seen at the tick), when a plan file that changed meanwhile, or a plan
  waiting for one that changed (`after`), became claimable (it may come
  first), or when a cron entry, a ticket, the config or a folder changed.
- When the list runs out after a plan ran, the daemon does not scan either:
  the scan the list came from covered every plan, so it sleeps as an idle
  daemon does (daemon/loop.py, `_sleep`), looking at what changed while the
  plan ran, at the plans waiting for another, and at each file that changes,
  until the list is a tick old. At 100,000 plans a full scan takes seconds
  under load, and an approval arriving during it would wait for it. With
  `--once` the daemon scans again instead: it exits only when a fresh scan
  found nothing.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from modulatio_d.daemon.scan import Candidate, Scanner


def ordered(candidates: list[Candidate], rank: int, of: int) -> list[Candidate]:
    """`candidates` (sorted) in the order daemon `rank` of `of` tries them (see above)."""
    if of <= 1 or len(candidates) < 2:
        return list(candidates)
    out: list[Candidate] = []
    start = 0
    while start < len(candidates):
        priority = candidates[start].sort_key[0]
        end = start
        while end < len(candidates) and candidates[end].sort_key[0] == priority:
            end += 1
        group = candidates[start:end]
        for r in range(of):
            out += group[(rank + r) % of::of]
        start = end
    return out


def rank_among(daemons_dir: Path, own: str) -> tuple[int, int]:
    """(k, N): the place of heartbeat file `own` among the daemons' heartbeat files."""
    try:
        names = {n for n in os.listdir(daemons_dir) if n.endswith(".json")}
    except OSError:  # no folder yet, or the mount cut off: as if alone
        names = set()
    names.add(own)
    ranked = sorted(names)
    return ranked.index(own), len(ranked)


def changed_plans(changed: set[str]) -> set[str] | None:
    """The plan files among `changed` (Waker.take_changed); None when anything else
    changed too (a cron entry, a ticket, the config, a folder: the tick handles those)."""
    plans = {p for p in changed if os.path.basename(os.path.dirname(p)) == "plans"}
    return None if changed - plans else plans


class Candidates:
    """The rest of the last scan's list, tried one plan at a time (module docstring)."""

    def __init__(self, scanner: Scanner, daemons_dir: Path, own: str,
                 clock: Callable[[], datetime], monotonic: Callable[[], float],
                 max_age: float):
        self.scanner = scanner
        self.daemons_dir = daemons_dir
        self.own = own
        self.clock = clock
        self.monotonic = monotonic
        self.max_age = max_age
        self._rest: deque[Candidate] = deque()
        self.fresh = False  # the list comes from the scan just made: no look again
        self._filled_at = -float("inf")
        self.scans = 0  # full scans since the start (told when the daemon stops)
        self.scans_after: Counter[str] = Counter()  # ...by what came before each (`after`)
        self.after = "the start"  # what brought the daemon's loop to its top (loop.py)

    def fill(self, candidates: list[Candidate], new_folder: bool = False) -> None:
        """The list of a full scan just made, after `self.after` or a `new_folder` watched
        (as every folder is at the first scan)."""
        self.scans_after["a new folder" if new_folder and self.scans else self.after] += 1
        self.scans += 1
        self._rest = deque(ordered(candidates, *rank_among(self.daemons_dir, self.own)))
        self.fresh = True
        self._filled_at = self.monotonic()

    def told(self) -> dict[str, object]:
        """What `daemon_stopped` says of the scans (for the benchmarks)."""
        return {"scans": self.scans, "scans_after": dict(self.scans_after)}

    def left(self) -> float:
        """Seconds until the list is a tick old (a full scan is then due)."""
        return max(0.0, self.max_age - (self.monotonic() - self._filled_at))

    def ran(self) -> bool:
        """A plan ran: what is left must be looked at again before it is tried. Whether
        any is left: when none is, the daemon sleeps (looking at what changed meanwhile
        first) rather than scanning, since the list's scan covered every plan."""
        self.fresh, self.after = False, "a plan ended"
        return bool(self._rest)

    def lost(self) -> None:
        """A race was lost: a peer may try the same order; count the daemons again."""
        rest = sorted(self._rest)
        self._rest = deque(ordered(rest, *rank_among(self.daemons_dir, self.own)))

    def scan_due(self, changed: set[str]) -> bool:
        """Whether a full scan must come before the next try. `changed`: the `.md`
        files inotify reported changed since the last look."""
        if not self._rest or self.monotonic() - self._filled_at >= self.max_age:
            return True
        plans = changed_plans(changed)
        if plans is None:
            return True  # a cron entry, a ticket, the config: the tick handles those
        return bool(plans and self.scanner.look_at(plans | self.scanner.waiting, self.clock()))

    def __iter__(self) -> Iterator[Candidate]:
        """Each plan left, taken off the list as it is given; looked at alone first
        unless the list is fresh (a plan ended or time passed since it was made)."""
        while self._rest:
            c = self._rest.popleft()
            if not self.fresh:
                found = self.scanner.look_at({str(c.path)}, self.clock())
                if not found:
                    continue  # taken, ended, changed into something not claimable
                c = found[0]
            yield c

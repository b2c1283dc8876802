"""A daemon's housekeeping, between its ticks' real work.

- Temp files left by kills (store/tempfiles.py): swept at the first tick and
  every tempfiles.SWEEP_EVERY_S after.
- The events.jsonl rotation size follows the config (`retention.events_max_bytes`).
- Retention (store/retention.py), only when the config sets
  `retention.older_than`: a prune round at the first sweep and every
  retention.PRUNE_EVERY_S after, under `.modulatio/retention.lock`, so one
  daemon at a time does it; one that finds the lock held skips the round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from modulatio_d.store import retention, tempfiles
from modulatio_d.store.config import Retention
from modulatio_d.store.events import EventLog
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.daemon")


class Housekeeping:
    def __init__(self, vault: Vault, events: Callable[..., None],
                 monotonic: Callable[[], float]):
        self.vault = vault
        self.events = events
        self.monotonic = monotonic
        self._last_sweep: float | None = None
        self._last_prune: float | None = None

    def __call__(self, served: Iterable[str], now: datetime, policy: Retention) -> None:
        sink = getattr(self.events, "sink", self.events)  # daemon/story.py wraps the log
        if isinstance(sink, EventLog):
            sink.max_bytes = policy.events_max_bytes
        mono = self.monotonic()
        if self._last_sweep is not None and mono - self._last_sweep < tempfiles.SWEEP_EVERY_S:
            return
        self._last_sweep = mono
        served = list(served)
        tempfiles.sweep(self.vault, served, now.timestamp())
        if policy.older_than is None or (self._last_prune is not None and
                                         mono - self._last_prune < retention.PRUNE_EVERY_S):
            return
        self._last_prune = mono
        report = retention.prune(self.vault, served, now, policy.older_than, policy.keep_last,
                                 remove=not policy.archive, notify=self.events)
        if report.archived or report.events_removed:
            log.info("retention: %d finished plan(s) %s, %d rotated event log(s) removed",
                     len(report.archived), "removed" if report.removed else "archived",
                     len(report.events_removed))

"""What makes kickoff plans inside the daemon: cron entries and watch triggers.

The loop calls `fire_due(project, now)` every tick and while a step runs. Cron
entries (cron_firing.py) and watch triggers (trigger_firing.py) each keep
their own exactly-once protocol; a failure of one does not keep the other from
firing. A watch wants to be looked at every `poll` seconds, sooner than the
daemon's tick: the time is handed to the scan (`Scanner.wake_hint`), which
caps the loop's sleep with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from modulatio_d.daemon.cron_firing import CronFirer
from modulatio_d.daemon.scan import Scanner
from modulatio_d.daemon.trigger_firing import TriggerFirer
from modulatio_d.store.trust import Checks
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.triggers")


class Kickoffs:
    def __init__(self, vault: Vault, events: Callable[..., None],
                 clock: Callable[[], datetime], monotonic: Callable[[], float],
                 trust: Checks | None, scanner: Scanner | None = None):
        self.cron = CronFirer(vault, events, clock=clock, trust=trust)
        self.triggers = TriggerFirer(vault, events, monotonic, trust)
        self.scanner = scanner
        self.monotonic = monotonic
        self._told: set[str] = set()

    def fire_due(self, project: str, now: datetime) -> list[str]:
        made = self.cron.fire_due(project, now)
        self.triggers.next_look = None
        try:
            made += self.triggers.fire_due(project, now)
        except Exception as e:  # noqa: BLE001 (triggers never stop cron nor the daemon)
            if str(e) not in self._told:
                self._told.add(str(e))
                log.error("triggers of %s skipped: %s: %s", project, type(e).__name__, e,
                          exc_info=e)
        if self.scanner is not None and self.triggers.next_look is not None:
            self.scanner.wake_hint = self.triggers.next_look - self.monotonic()
        return made

    @property
    def refused(self) -> dict[str, str]:
        return {**self.cron.refused, **self.triggers.refusals.current}

"""The per-plan guard: an error nobody foresaw costs one plan, never the daemon.

Protocol (loop.py wraps the claim and the run of each plan in it):
1. Any exception while claiming or running one plan (not only the BadFile and
   OSError the claim and the runner expect) is caught: logged at ERROR with its
   traceback, recorded in events.jsonl as `plan_crashed` (`error_type`, `error`,
   `where`: the innermost frame, `count`, `limit`), and the plan is held off
   BACKOFF_TICKS ticks. The run's lock is released by the caller as always; a
   claim that raised released its own.
2. Crashes are counted per version of the plan: a hash of what people wrote,
   that is the file less the lines of the daemon's keys and of `status` (every
   claim rewrites those). The count lives in
   `.modulatio/state/<PROJECT>/crashes/<plan-id>.json` ({version, count, error}),
   written under the plan's lock.
3. At CRASH_LIMIT crashes on one version, the plan is paused (under its lock, as
   its holder) with a critical ticket quoting the error, and the count is
   cleared: approving the ticket gives it CRASH_LIMIT more tries, an edit of the
   plan starts the count again. A run that ends without a crash clears it too.
4. KeyboardInterrupt and the like are not caught. SystemExit (a reflector plugin
   calling sys.exit, say) is counted like a crash and then let through: a
   daemon that systemd restarts again and again because of one plan converges
   as well, because the count is on disk.

Why a file of its own: the count must outlive the daemon (a crash-looping
daemon comes back with empty memory); the owned-keys record belongs to the
stale-save protocol and is rewritten from the plan on every write; counting
`plan_crashed` lines would mean reading all of events.jsonl. A daemon killed
outright (SIGKILL, the OOM killer) is not counted: nothing can tell that from
a person stopping it, and the plan's next claim resumes it correctly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from modulatio_d.core import markdown
from modulatio_d.core.plan import CLAIMABLE, DAEMON_KEYS, PlanStatus
from modulatio_d.store import atomic, fs, tickets
from modulatio_d.store.lock import FileLock, lock_path
from modulatio_d.store.plan_file import HeldPlan
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.daemon")
CRASH_LIMIT = 3
"""Crashes on one version of a plan before it is paused with a critical ticket."""
_PERSONS = frozenset({*DAEMON_KEYS, "status"})
_QUOTE_CHARS = 500


@dataclass(frozen=True)
class Crash:
    plan_id: str
    count: int | None
    """Crashes on this version so far (None: its lock was busy, nothing was counted)."""
    paused: bool


def describe(error: BaseException) -> str:
    """`Type: message`, shortened for a ticket, an event and a plan's last_error."""
    text = f"{type(error).__name__}: {error}".strip().rstrip(":")
    return text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 1] + "…"


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    f = frames[-1]
    return f"{f.filename}:{f.lineno} in {f.name}"


class Guard:
    def __init__(self, vault: Vault, events: Callable[..., None],
                 clock: Callable[[], datetime]):
        self.vault = vault
        self.events = events
        self.clock = clock

    def crash_path(self, project: str, plan_id: str) -> Path:
        return self.vault.records_dir(project) / "crashes" / f"{plan_id}.json"

    def crashed(self, project: str, path: Path, error: BaseException,
                lock: FileLock | None) -> Crash:
        """Count `error` against the plan at `path`; `lock`: the plan's, when held."""
        plan_id = path.stem
        log.error("plan %s crashed: %s", plan_id, describe(error), exc_info=error)
        count, paused = None, False
        own = None
        try:
            if lock is None:
                own = FileLock(lock_path(path))
                lock = own if own.try_acquire() else None
            if lock is not None:
                count = self._count(project, path, error)
        except Exception as e:  # noqa: BLE001 (the guard must not become the crash)
            log.error("plan %s: its crash could not be counted: %s", plan_id, describe(e))
        self.events("plan_crashed", project=project, plan=plan_id,
                    error_type=type(error).__name__, error=describe(error),
                    where=_where(error), count=count, limit=CRASH_LIMIT)
        try:
            if count is not None and count >= CRASH_LIMIT:
                paused = self._pause(project, path, error, count)
        except Exception as e:  # noqa: BLE001
            log.error("plan %s could not be paused after %d crashes: %s", plan_id, count,
                      describe(e), exc_info=e)
        finally:
            if own is not None:
                own.release()
        return Crash(plan_id, count, paused)

    def ran(self, project: str, plan_id: str) -> None:
        """A run ended without a crash: a count of earlier ones no longer matters."""
        try:  # by name in its folder (store/fs/): never through a linked folder
            fs.unlink(self.crash_path(project, plan_id), missing_ok=True)
        except OSError:
            pass

    # --- under the plan's lock ----------------------------------------------------

    def _count(self, project: str, path: Path, error: BaseException) -> int:
        version = self._version(path)
        record = self.crash_path(project, path.stem)
        try:
            seen = json.loads(record.read_text())
            count = int(seen["count"]) if seen.get("version") == version else 0
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            count = 0
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic.replace(record, json.dumps({"version": version, "count": count + 1,
                                           "error": describe(error)}).encode())
        return count + 1

    def _version(self, path: Path) -> str:
        """A hash of what people wrote in the plan (not the daemon's keys or status)."""
        try:
            raw = path.read_bytes()
        except OSError:
            return ""
        text = raw.decode("utf-8", "replace")
        return hashlib.sha256(markdown.without_keys(text, _PERSONS).encode()).hexdigest()

    def _pause(self, project: str, path: Path, error: BaseException, count: int) -> bool:
        held = HeldPlan(self.vault, path, self.events)
        plan = held.plan
        if plan.status not in CLAIMABLE:  # a person stopped it meanwhile
            self.crash_path(project, plan.id).unlink(missing_ok=True)
            return False
        reason = f"crashed the daemon {count} times: {describe(error)}"
        details = (f"Claiming or running this plan raised an error the daemon does not "
                   f"expect, {count} times in a row without the plan's file changing:\n\n"
                   f"    {describe(error)}\n\n    at {_where(error)}\n\n"
                   f"The daemon's log has the whole traceback. A value of the plan the "
                   f"daemon does not check, or a bug of modulatio_d: fix the plan (or "
                   f"report the bug), then approve to try again ({CRASH_LIMIT} more tries), "
                   f"or decline to abort the plan.")
        now = self.clock()
        ticket_id = tickets.open_ticket(
            self.vault, project, plan.id, tickets.Severity.CRITICAL, reason, details,
            {"current_index": plan.current_index, "rev": plan.rev + 1}, now)
        self.events("ticket_opened", project=project, plan=plan.id, ticket=ticket_id,
                    severity=tickets.Severity.CRITICAL.value, reason=reason)
        before = plan.status
        after = held.update({"status": PlanStatus.PAUSED.value, "last_error": reason})
        self.crash_path(project, plan.id).unlink(missing_ok=True)
        self.events("status_changed", project=project, plan=plan.id, previous=before.value,
                    status=after.status.value, by="daemon", reason=reason)
        log.error("plan %s paused after %d crashes; ticket %s", plan.id, count, ticket_id)
        return True

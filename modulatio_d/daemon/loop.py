"""The tick loop of one daemon process: scan, claim, run, sleep.

Each tick: fire the cron entries that are due, apply decided tickets, scan the served
projects, and try the claimable plans in order (candidates.py): the first one claimed
(claim.py, a compare-and-swap under the plan's lock) is run (runner.py), then released; then
the rest of that scan's list (candidates.py says when to scan again). It sleeps only when a
fresh scan found nothing to claim, until the next tick or until a vault file changes
(inotify), sooner after a claim lost to a busy lock. A plan whose file cannot be written
(disk full) is left alone BACKOFF_TICKS ticks. Time comes from the clocks passed in.

Before the first tick the vault, the folders above it and `.modulatio/` must pass the trust
checks (store/trust.py) or the daemon exits 1; each tick checks the vault and `.modulatio/`
again (a failure: nothing is acted on, told once), and the scan, cron and tickets check
their folders and files on the stat they have (the trust.Checks the daemon lends them).

Signal handlers only set flags (the wake-up pipe ends any wait): the first SIGTERM/SIGINT
asks the running step to stop (TERM, then KILL after a grace) and the loop to exit 0,
leaving the plan `executing` at the same index for the next daemon; the second kills the
step at once. SIGUSR2 (a pool shrinking, daemon/pool.py) drains: the step finishes, no other
starts, the loop exits 0. SIGHUP (a closed terminal, `kill -HUP` after editing the config)
stops nothing: the config is read again at the next tick; a running plan keeps the config it
was claimed with. SIGPIPE stays ignored, so a closed log pipe is a failed write, never a
death. Any other signal that ends a process (SIGKILL, SIGQUIT, SIGUSR1) is a crash: the step
dies with the daemon (its dead man's switch, deadman.py) and the next daemon resumes the plan
from `in_flight`. A pass of the loop meeting the mount cut off or a system error waits a tick
and goes on (poll.Outage: the same error FAILED_PASSES passes in a row ends it).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from modulatio_d import __version__
from modulatio_d.core.errors import BadFile, FileChanged
from modulatio_d.core.plan import Plan, SubObjective
from modulatio_d.daemon import tickets
from modulatio_d.daemon.admission import Admission
from modulatio_d.daemon.candidates import Candidates, changed_plans
from modulatio_d.daemon.claim import Claimed, Claimer, Missed, RaceRetries
from modulatio_d.daemon.guard import Guard
from modulatio_d.daemon.hooks import HookKeeper
from modulatio_d.daemon.housekeeping import Housekeeping
from modulatio_d.daemon.poll import Outage, Poller, needs_polling
from modulatio_d.daemon.runner import Runner
from modulatio_d.daemon.scan import Candidate, Scanner
from modulatio_d.daemon.sdnotify import NOTIFY_ENV_VARS, Notifier
from modulatio_d.daemon.services import Clocks, Services, Stop
from modulatio_d.daemon.settings import Settings
from modulatio_d.daemon.story import Story
from modulatio_d.daemon.wake import Waker, Watcher, watched
from modulatio_d.store import config, slots, trust
from modulatio_d.store.events import EventLog
from modulatio_d.store.heartbeat import Heartbeat, prune_dead
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.daemon")
# A plan whose file cannot be written (disk full, permissions) is left alone this
# many ticks before it is tried again, so a daemon neither dies nor spins on it.
BACKOFF_TICKS = 10


class Daemon:
    def __init__(self, vault: Vault, projects: list[str], tick_seconds: float, once: bool,
                 clock: Callable[[], datetime], environ: dict[str, str],
                 monotonic: Callable[[], float] = time.monotonic):
        self.vault = vault
        self.projects = projects
        self._folders_seen: list[str] = []
        self.outage = Outage()  # the vault's mount cut off (poll.py): told once, waited out
        self.tick_seconds = tick_seconds
        self.once = once
        self.clock = clock
        self.monotonic = monotonic
        self.events = Story(EventLog(vault.events_path, clock))  # events.jsonl + log lines
        self.stop = Stop()
        self.waker = Waker()
        self.trust = trust.Checks(vault.root, self.events, vault, monotonic)
        self.scanner = Scanner(vault, projects or None, self.events, monotonic=monotonic,
                               trust=self.trust)
        self.notifier = Notifier(environ, clock=monotonic)
        # Steps are not the daemon to systemd, nor given its opt-in to run as root.
        self.base_env = {k: v for k, v in environ.items()
                         if k not in NOTIFY_ENV_VARS and k != trust.ALLOW_ROOT_ENV}
        self.heartbeat = Heartbeat(vault.daemons_dir, tick_seconds, __version__, clock())
        self.hooks = HookKeeper(vault, self.base_env, monotonic)  # the hook process
        self.host = socket.gethostname()
        self.cron = None
        self._last_beat, self._beat_due = 0.0, None  # a beat held back is due at (_periodic)
        self._beat_on: tuple[str | None, int | None] = (None, None)  # what the last beat said
        self._last_cron = 0.0
        self.housekeeping = Housekeeping(vault, self.events, monotonic)  # temp files, retention
        self._phase_errors: set[tuple[str, str]] = set()  # tracebacks logged once each
        self.ticket_memory = tickets.Memory(vault, self.events)
        self.settings = Settings(vault, self.events, self.trust)  # the config, as read
        self.claimer = Claimer(vault, self.events, clock, self.host, os.getpid(), self.trust)
        self.guard = Guard(vault, self.events, clock)
        self.races = RaceRetries()
        self.pending = Candidates(self.scanner, vault.daemons_dir, self.heartbeat.path.name,
                                  clock, monotonic, tick_seconds)  # between scans
        self.config = config.Config()
        self.admission = Admission(vault, self.events, self.host, os.getpid())  # pause, slots

    # --- signals ------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop.requested += 1

    def _on_hangup(self, signum: int, frame: object) -> None:
        self.settings.reload = True  # SIGHUP: read the config again at the next tick

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_hangup)
        signal.signal(signal.SIGUSR2, lambda *_: setattr(self.stop, "drain", True))
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # Python's default, stated: see above
        signal.set_wakeup_fd(self.waker.w, warn_on_full_buffer=False)

    # --- the loop -----------------------------------------------------------------

    def run(self) -> int:
        if os.geteuid() == 0:
            log.warning("%s", trust.ROOT_WARNING)
        self._load_config()
        problems = trust.check_vault(self.vault.root, self.vault.meta, self.trust.policy)
        if problems:
            for problem in problems:  # logged, and in events.jsonl for `status`
                self.trust.refusals.tell(problem.path, None, problem, "start", kind="vault")
            log.error("refusing to start: %d folder(s) above could be written by someone "
                      "this daemon does not trust (docs/security.md)", len(problems))
            return 1
        self._install_signals()
        for stale in prune_dead(self.vault.daemons_dir):
            log.info("removed the heartbeat of a daemon that died: %s", stale)
        watcher = Watcher(self.waker, self.monotonic)
        network = needs_polling(self.vault.root)
        self.claimer.shared = bool(network)  # notes read again until released (claim.py)
        poller = Poller(self.waker, lambda: self.config.poll_interval) if network else None
        if network:
            log.info("the vault is on %s: inotify cannot see other hosts' changes, so the "
                     "served folders are also polled (poll_interval)", network)
        self.events("daemon_started", projects=self.projects or "all", polling=bool(network),
                    tick_seconds=self.tick_seconds, version=__version__)
        log.info("daemon %s.%d started on %s (projects: %s, tick %gs)", self.host, os.getpid(),
                 self.vault.root, ",".join(self.projects) or "all", self.tick_seconds)
        ready = False
        try:
            while not self.stop.ending():
                self.outage.start_pass()
                try:
                    new_folders = watcher.watch(self._watched()) if watcher.due() else 0
                    if poller is not None:
                        poller.watch(self.vault.root, map(self.vault.project_dir,
                                                          self._served()), (self.vault.meta,))
                    if new_folders or self.settings.reload or self.pending.scan_due(
                            self.waker.take_changed()):
                        self.pending.fill(self._tick(), new_folder=bool(new_folders))
                        ready = ready or self.notifier.ready() or True
                    self.outage.over()
                    self.races.start_pass()
                    self.admission.start_pass()  # who waits for a slot: found again
                    if self._claim_and_run(self.pending):
                        self.races.ran()
                        if self.pending.ran() or self.once:
                            continue  # the rest of the last scan (candidates.py)
                    elif self.once and not self.pending.fresh:
                        continue  # --once ends only when a fresh scan found nothing
                    elif self.once:
                        log.info("nothing claimable: exiting (--once)")
                        break
                    if new_folders and watcher.watch(self._watched()):
                        continue  # a folder made during the scan had no watch: scan again
                    wait = self.scanner.cap_wait(self.admission.retry_in(
                        self.races.next_wait(self.pending.left())), self.clock())
                    log.debug("nothing (more) to claim: sleeping up to %gs", wait)
                    self.pending.after = self._sleep(wait, after_run=not self.pending.fresh)
                except Exception as e:  # noqa: BLE001 (a cut-off mount, a passing error)
                    self.outage.wait(e, self.waker, self.tick_seconds)  # else: raised again
        finally:
            self.notifier.stopping()
            watcher.stop()
            if poller is not None:
                poller.stop()
            self.heartbeat.remove()
            self.hooks.stop()
            self.events("daemon_stopped", signals=self.stop.requested, **self.pending.told())
            log.info("daemon stopped")
        return 0

    def _watched(self) -> list[Path]:
        return watched(self.vault, self._served())  # the folders people write in (wake.py)

    def _served(self) -> list[str]:
        """The project folders served (those seen last while the mount is cut off)."""
        if self.projects:
            return list(self.projects)
        try:
            self._folders_seen = self.vault.folders()
        except OSError as e:
            log.warning("cannot list the vault (%s): watching those seen last", e.strerror or e)
        return self._folders_seen

    def _sleep(self, seconds: float, after_run: bool = False) -> str:
        """Sleep until the next tick is due, waking for what changed meanwhile.
        Changed plan files are looked at on their own (an idle daemon tried every other
        plan at its last scan): a person's approval is picked up without a scan of the
        whole vault, and a changed plan that cannot be claimed (our own writes, a draft
        being edited) costs no scan. A plan run from here (or just before: `after_run`)
        does not end the sleep either (candidates.py): what changed while it ran and the
        plans waiting for another are looked at alone. Anything else (a ticket, a cron
        entry, the config, a new folder, SIGHUP) ends the sleep and the caller ticks; so
        does a claim lost to a busy lock (`plan approve` still writing), retried shortly.
        Returns what ended it (told with the scan that follows: Candidates.after)."""
        deadline, ran = self.monotonic() + seconds, after_run
        if after_run:
            self._beat(self.clock(), None, None)  # idle again, as a tick would say
        while not self.stop.ending():
            if not ran and not self.waker.wait(deadline - self.monotonic()):
                return "tick"
            plans = changed_plans(self.waker.take_changed())
            if plans is None or self.settings.reload:  # not a plan, or SIGHUP: tick
                return "SIGHUP" if self.settings.reload else "a change not to a plan"
            if not (plans or ran):
                continue  # a wake-up whose change was taken already
            self.races.start_pass()
            ran = self._claim_and_run(self.scanner.look_at(
                plans | self.scanner.waiting if ran else plans, self.clock()))
            if ran:
                self.races.ran()
                self._beat(self.clock(), None, None)  # idle again, as a tick would say
            if self.races.lost or self.monotonic() >= deadline:
                return "a lost race" if self.races.lost else "tick"
        return "stop"

    def _tick(self) -> list[Candidate]:
        self.waker.drain()  # what woke us so far, the whole scan below covers
        self.waker.take_changed()
        now = self.clock()
        self._load_config()
        self.admission.refresh()
        self.trust.refresh()
        if not (self.trust.folder_ok(self.vault.root, None, "vault")
                and self.trust.folder_ok(self.vault.meta, None, "vault")):
            self._beat(now, None, None)  # alive, but acting on nothing until it is fixed
            return []
        self._guarded("cron", self._fire_cron, now)
        self._guarded("tickets", self._apply_tickets, now)
        self._sweep(now)
        self.hooks.keep(self.config)
        candidates = self.scanner.scan(now)
        log.debug("tick: %d claimable", len(candidates))
        self._beat(now, None, None)
        return candidates

    def _load_config(self) -> None:
        self.config = self.settings.load(self.config)

    def _guarded(self, what: str, phase: Callable[[datetime], None], now: datetime) -> None:
        """A phase of the tick that writes: one failing (disk full) is skipped this tick."""
        try:
            phase(now)
        except (OSError, FileChanged) as e:
            log.error("%s skipped this tick: %s", what, e)
        except Exception as e:  # noqa: BLE001 (each entry and ticket has its own guard;
            # this is the last one: the phase is skipped, the daemon goes on)
            told = (what, str(e)) in self._phase_errors
            self._phase_errors.add((what, str(e)))
            log.error("%s skipped this tick: %s: %s", what, type(e).__name__, e,
                      exc_info=None if told else e)

    def _sweep(self, now: datetime) -> None:
        """Temp files left by kills, retention (daemon/housekeeping.py)."""
        self.housekeeping(self.scanner.served(), now, self.config.retention)

    def _apply_tickets(self, now: datetime) -> None:
        for project in self.scanner.served():
            tickets.apply_decisions(self.vault, project, self.events, now,
                                    self.ticket_memory, trust=self.trust)

    def _fire_cron(self, now: datetime) -> None:
        self._last_cron = self.monotonic()
        if self.cron is None:  # cron entries and watch triggers (kickoffs.py)
            if not any(map(self.vault.has_kickoffs, self.scanner.served())):
                return  # nothing to fire: its code (croniter, 14 ms of a start) not loaded
            from modulatio_d.daemon.kickoffs import Kickoffs
            self.cron = Kickoffs(self.vault, self.events, self.clock, self.monotonic,
                                 self.trust, self.scanner)
        for project in self.scanner.served():
            if self.admission.paused(project) is None:  # paused: fired after resume
                self.cron.fire_due(project, now)  # each kickoff is logged as its own event

    def _beat(self, now: datetime, plan: Plan | None, step: SubObjective | None) -> None:
        self._last_beat = self.monotonic()
        self._beat_on = (plan.id if plan else None, step.index if step else None)
        try:
            served = self.scanner.served()
        except OSError:  # the vault's mount cut off (ENOTCONN): the beat goes on, a step too
            served = []
        paused = self.admission.status(served)
        waiting = sorted(self.admission.waiting)
        self.heartbeat.beat(now, plan.id if plan else None, step.index if step else None,
                            paused=paused, waiting_for_slot=waiting or None)
        self.notifier.watchdog()
        if plan is None:
            self.notifier.status(paused or (f"waiting for a slot: {', '.join(waiting)}"
                                            if waiting else "idle"))
        else:
            where = f"{plan.path.parent.parent.name}/{plan.id}"
            doing = (f"{where} step {step.index + 1}/{plan.total}: {step.title}" if step
                     else f"{where} between steps")
            self.notifier.status(f"{doing}; {paused}: stopping at the step boundary" if paused
                                 else doing)

    def _periodic(self, plan: Plan | None, step: SubObjective | None) -> None:
        """Called by the runner as a step starts and while it runs: heartbeat, watchdog, cron."""
        since = (mono := self.monotonic()) - self._last_beat
        moved = self._beat_on != (plan.id if plan else None, step.index if step else None)
        # A new plan or step: a beat at once, else within the second (Services.beat_due).
        if (moved and since >= 1.0) or since >= min(15.0, self.tick_seconds / 2):
            self._beat(self.clock(), plan, step)
        self._beat_due = self._last_beat + 1.0 if moved and since < 1.0 else None
        if mono - self._last_cron >= self.tick_seconds:
            self._guarded("cron", self._fire_cron, self.clock())
        self.hooks.keep(self.config)

    # --- claim and run --------------------------------------------------------------

    def _claim_and_run(self, candidates: Iterable[Candidate]) -> bool:
        """Claim the first plan that can be and run it; True when one ran (or crashed).
        The per-plan guard (guard.py): whatever one plan raises is that plan's crash,
        counted and held off, never the daemon's end."""
        self.admission.refresh()
        for c in candidates:
            if self.stop.ending():
                return False
            if self.admission.paused(c.project) is not None:
                continue
            held = self.admission.take(c, self.config.capacity)
            if held is None:
                continue  # a limit is full: it waits (admission.py)
            try:
                claimed = self.claimer.claim(c)
            except BaseException as e:  # the claim released the lock itself
                held.release_quietly()
                if not isinstance(e, (Exception, SystemExit)):
                    raise
                self._crashed(c, e, None)
                return True
            if claimed is Missed.LOST:
                self.races.lost = True
                self.pending.lost()
            elif claimed is Missed.UNWRITABLE:
                self.scanner.hold_off(c.path, self.tick_seconds * BACKOFF_TICKS)
            if not isinstance(claimed, Claimed):
                held.release_quietly()
                continue
            try:
                self._run(c, claimed, held)
            except BaseException as e:
                if not isinstance(e, (Exception, SystemExit)):
                    raise
                self._crashed(c, e, claimed)
            else:
                self.guard.ran(c.project, c.path.stem)
            finally:
                claimed.release()
                held.release()
            self.scanner.wrote(c.path, claimed.held.snapshot.signature, claimed.held.plan.status)
            return True
        return False

    def _crashed(self, c: Candidate, error: BaseException, claimed: Claimed | None) -> None:
        """Count the crash, hold the plan off; a SystemExit still ends the daemon."""
        self.guard.crashed(c.project, c.path, error, claimed.lock if claimed else None)
        self.scanner.hold_off(c.path, self.tick_seconds * BACKOFF_TICKS)
        if not isinstance(error, Exception):
            raise error

    def _run(self, c: Candidate, claimed: Claimed, held: slots.Held) -> None:
        plan = claimed.held.plan  # told in a beat at once, unless one was under a second ago
        self._periodic(plan, plan.sub_objectives[plan.current_index]
                       if plan.current_index < plan.total else None)
        svc = Services(self.config, self.events, self.waker, self.stop,
                       Clocks(self.clock, self.monotonic), self._periodic, self.base_env,
                       self.tick_seconds, halt=lambda: self.admission.halt(c.project),
                       slots=held, beat_due=lambda: self._beat_due)
        try:
            Runner(claimed.held, claimed.lock, claimed.token, svc, claimed.prewritten).run()
        except (BadFile, FileChanged, OSError) as e:  # cannot write: not a death
            log.error("plan %s left as it is for now: %s", claimed.held.plan.id, e)
            self.events("plan_left", project=c.project, plan=claimed.held.plan.id,
                        reason=str(e), retry_in_s=self.tick_seconds * BACKOFF_TICKS)
            self.scanner.hold_off(c.path, self.tick_seconds * BACKOFF_TICKS)

"""The worker pool: `modulatio daemon --workers N`, a supervisor of N daemons.

Each worker is the ordinary daemon (`modulatio daemon --vault V ...`), one plan
at a time, forked from the supervisor once it has imported the daemon
(daemon/worker_fork.py: a fork instead of a new interpreter's start-up); the
workers coordinate through the plans' locks exactly as separate daemons do.
The supervisor runs no plan, holds no lock, and reads nothing of the vault but
its size file.

Protocol:
- Size: the host's size file (store/pool.py) when there is one, else
  `--workers N`. The file is looked at every POLL_S (its stat signature), so a
  `modulatio workers N` is noticed within a second. A bad file is refused
  (file_refused, told once per version) and the size in force stays.
- Slots 1..size. A missing slot's worker is started; a surplus worker (the
  idle ones first, then the highest slots) gets SIGUSR2 and drains: its step
  finishes, it starts no other, it exits 0 (daemon/loop.py). A draining worker
  holds no slot: growing again starts new workers at once beside it.
- `--once`: every worker runs `--once` (until nothing is claimable); a worker
  that ends is not started again, and the supervisor exits once every slot's
  worker has ended: 0 when each exited 0, else 1 (a worker killed or failed;
  its plan, if any, stays resumable as after any daemon's death).
- Otherwise a worker that exits when not asked to (a crash, SIGKILL, an exit of
  its own) is started again after a backoff per slot: RESTART_MIN_S doubling
  to RESTART_MAX_S while it keeps dying within HEALTHY_S of its start. Its plan
  stays `executing` with `in_flight` and is resumed by whichever worker claims
  it next (the kernel freed the dead worker's lock).
- Signals: SIGTERM/SIGINT are forwarded as SIGTERM to every worker (each stops
  its step and leaves its plan resumable, as a single daemon does), a second
  one again (the steps are then killed at once); the supervisor exits 0 when
  every worker has. SIGUSR2 drains the whole pool, SIGHUP is forwarded (the
  workers read the config again). Workers run in process groups of their own,
  so a terminal's ^C reaches only the supervisor, and die with it
  (PR_SET_PDEATHSIG SIGTERM, set in the forked child): a supervisor killed
  outright leaves no worker.
- systemd: only the supervisor speaks sd_notify (the workers' environment loses
  NOTIFY_SOCKET): READY once every worker's first heartbeat is written, a STATUS
  line with the pool's counts, WATCHDOG from its loop, STOPPING.
- State for `ps`: `.modulatio/daemons/<host>.<pid>.pool` (store/pool.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from modulatio_d import __version__
from modulatio_d.core.errors import BadFile
from modulatio_d.core.times import format_time, utcnow
from modulatio_d.daemon import worker_fork
from modulatio_d.daemon.sdnotify import NOTIFY_ENV_VARS, Notifier
from modulatio_d.daemon.wake import Waker
from modulatio_d.store import fs, heartbeat, pool
from modulatio_d.store.events import EventLog
from modulatio_d.store.refusals import Refusals
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.pool")
RESTART_MIN_S = 0.5
RESTART_MAX_S = 60.0
HEALTHY_S = 30.0
"""A worker that ran this long before dying is restarted at once (its backoff resets)."""
LOOP_S = 0.2
STATE_EVERY_S = 5.0
@dataclass
class Worker:
    slot: int
    proc: worker_fork.Forked
    started: float
    started_at: str
    restarts: int
    state: str = "running"
    """running (holds its slot) | draining (SIGUSR2: ends after its step) | stopping"""


@dataclass
class Settings:
    vault: Vault
    worker_args: list[str]
    """What follows `daemon --vault V` for each worker (tick, projects, log options)."""
    size: int
    """`--workers N`: the size while the vault stores none for this host."""
    environ: dict[str, str]
    run: worker_fork.Run
    """Runs a worker's `modulatio daemon ...` in the forked child (given by the CLI)."""
    once: bool = False
    """`--once`: each worker runs until nothing is claimable; none is started again."""
    clock: Callable[[], datetime] = utcnow
    monotonic: Callable[[], float] = time.monotonic


class Supervisor:
    def __init__(self, s: Settings):
        self.s = s
        self.vault = s.vault
        self.events = EventLog(s.vault.events_path, s.clock)
        self.refusals = Refusals(s.vault, self.events, "pool")
        self.notifier = Notifier(s.environ, clock=s.monotonic)
        self.waker = Waker()
        self.workers: list[Worker] = []
        self.size = s.size
        self.source = "--workers"
        self.requested = 0  # SIGTERM/SIGINT received
        self.forwarded = 0
        self.draining_all = False
        self.hangup = False
        self.not_before: dict[int, float] = {}
        self.deaths: dict[int, int] = {}  # quick deaths in a row, per slot
        self.restarts: dict[int, int] = {}
        self.finished: set[int] = set()  # --once: the slots whose worker ran out of work
        self.failed = 0  # --once: workers that ended otherwise than exit 0
        self._sig: tuple | None | str = "unread"
        self._last_look = -1e9
        self._last_state = -1e9
        self._shown: object = None
        self._ready = False
        self.state_path = pool.state_path(s.vault)
        self.started_at = format_time(s.clock(), micro=True)
        self.env = {k: v for k, v in s.environ.items() if k not in NOTIFY_ENV_VARS}

    # --- signals --------------------------------------------------------------------

    def _install(self) -> None:
        def stop(signum, frame):
            self.requested += 1

        def drain(signum, frame):
            self.draining_all = True

        def hup(signum, frame):
            self.hangup = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGUSR2, drain)
        signal.signal(signal.SIGHUP, hup)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a worker's end wakes the loop
        signal.set_wakeup_fd(self.waker.w, warn_on_full_buffer=False)

    def _send(self, w: Worker, sig: int) -> None:
        try:
            w.proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass  # exited meanwhile: reaped at the next pass

    # --- the loop -------------------------------------------------------------------

    def run(self) -> int:
        worker_fork.preload()
        self._install()
        self._look_at_size(force=True)
        self.events("pool_started", size=self.size, source=self.source, version=__version__)
        log.info("pool supervisor %d started on %s: %d worker(s) (from %s)", os.getpid(),
                 self.vault.root, self.size, self.source)
        try:
            while True:
                self._reap()
                if self.hangup:
                    self.hangup = False
                    for w in self.workers:
                        self._send(w, signal.SIGHUP)
                if self.requested:
                    if self.requested > self.forwarded:
                        self._stop_all()
                elif self.draining_all:
                    self._drain(list(self.workers), "the pool drains (SIGUSR2)")
                else:
                    self._look_at_size()
                    self._reconcile()
                if (self.requested or self.draining_all or self._all_done()) \
                        and not self.workers:
                    break
                self._tell()
                self.waker.wait(LOOP_S)
        finally:
            self.notifier.stopping()
            pool.remove_state(self.state_path)
            self.events("pool_stopped", signals=self.requested)
            log.info("pool supervisor stopped")
        return 1 if self.failed else 0

    def _all_done(self) -> bool:
        return self.s.once and all(slot in self.finished for slot in range(1, self.size + 1))

    def _stop_all(self) -> None:
        if self.forwarded == 0:
            self.notifier.stopping("stopping the pool's workers")
            log.info("stopping the pool: SIGTERM to %d worker(s)", len(self.workers))
        self.forwarded = self.requested
        for w in self.workers:
            w.state = "stopping"
            self._send(w, signal.SIGTERM)

    def _look_at_size(self, force: bool = False) -> None:
        now = self.s.monotonic()
        if not force and now - self._last_look < pool.POLL_S:
            return
        self._last_look = now
        sig = pool.signature(self.vault)
        if sig == self._sig:
            return
        self._sig = sig
        path = pool.size_path(self.vault)
        try:
            stored = pool.read_size(self.vault)
        except BadFile as e:  # the size in force stays
            self.refusals.tell(path, None, e, sig)
            return
        except Exception as e:  # noqa: BLE001 (unreadable, or a reader's bug: refused too,
            # never the supervisor's end)
            self.refusals.tell(path, None, BadFile(path, f"could not be read ({e})"), sig)
            return
        self.refusals.clear(path)
        size, source = (stored, "vault") if stored is not None else (self.s.size, "--workers")
        if (size, source) != (self.size, self.source) and not force:
            log.info("pool resized: %d -> %d worker(s) (from %s)", self.size, size,
                     path if stored is not None else "--workers")
            self.events("pool_resized", size=size, previous=self.size, source=source)
        self.size, self.source = size, source

    def _reconcile(self) -> None:
        running = [w for w in self.workers if w.state == "running"]
        if len(running) > self.size:
            self._drain(self._surplus(running, len(running) - self.size),
                        f"the pool shrinks to {self.size}")
            running = [w for w in self.workers if w.state == "running"]
        held = {w.slot for w in running}
        now = self.s.monotonic()
        for slot in range(1, self.size + 1):
            if slot not in held and slot not in self.finished and \
                    now >= self.not_before.get(slot, 0.0):
                self._start(slot)

    def _surplus(self, running: list[Worker], n: int) -> list[Worker]:
        """The workers to drain: idle ones first (nothing to finish), then high slots."""
        def busy(w: Worker) -> bool:
            beat = heartbeat.read_one(self.vault.daemons_dir, socket.gethostname(), w.proc.pid)
            return bool(beat and beat.get("active_plan"))
        ranked = sorted(running, key=lambda w: (busy(w), -w.slot))
        return ranked[:n]

    def _drain(self, workers: list[Worker], why: str) -> None:
        for w in workers:
            if w.state == "running":
                log.info("worker %d (slot %d) drains: %s", w.proc.pid, w.slot, why)
                w.state = "draining"
                self._send(w, signal.SIGUSR2)

    def _start(self, slot: int) -> None:
        argv = ["daemon", "--vault", str(self.vault.root), *self.s.worker_args]
        try:
            env = {**self.env, "MODULATIO_POOL_SLOT": str(slot)}
            proc = worker_fork.fork(self.s.run, argv, env, self.vault.root)
        except OSError as e:  # EAGAIN (too many processes), ENOMEM: try later
            log.error("worker for slot %d not started: %s", slot, e)
            self._back_off(slot)
            return
        restarts = self.restarts.get(slot, 0)
        self.workers.append(Worker(slot, proc, self.s.monotonic(),
                                   format_time(self.s.clock(), micro=True), restarts))
        self.events("worker_started", slot=slot, worker=proc.pid, restarts=restarts)
        log.info("worker %d started (slot %d)", proc.pid, slot)

    def _back_off(self, slot: int) -> None:
        k = self.deaths.get(slot, 0)
        self.deaths[slot] = k + 1
        self.not_before[slot] = self.s.monotonic() + min(RESTART_MAX_S, RESTART_MIN_S * 2 ** k)

    def _reap(self) -> None:
        for w in list(self.workers):
            code = w.proc.poll()
            if code is None:
                continue
            self.workers.remove(w)
            how = f"signal {-code}" if code < 0 else f"exit {code}"
            if w.state != "running" or self.s.once:  # asked to end, or out of work (--once)
                if w.state == "running":  # --once: its slot is done, well or not
                    self.finished.add(w.slot)
                    self.failed += code != 0
                level = logging.ERROR if w.state == "running" and code != 0 else logging.INFO
                log.log(level, "worker %d (slot %d) ended (%s)", w.proc.pid, w.slot, how)
                self.events("worker_ended", slot=w.slot, worker=w.proc.pid, how=how)
                continue
            if self.s.monotonic() - w.started >= HEALTHY_S:
                self.deaths[w.slot] = 0
            self._back_off(w.slot)
            self.restarts[w.slot] = self.restarts.get(w.slot, 0) + 1
            wait = max(0.0, self.not_before[w.slot] - self.s.monotonic())
            log.error("worker %d (slot %d) died (%s): restarting it in %.1fs", w.proc.pid,
                      w.slot, how, wait)
            self.events("worker_died", slot=w.slot, worker=w.proc.pid, how=how,
                        restart_in_s=round(wait, 3))

    # --- telling --------------------------------------------------------------------

    def _tell(self) -> None:
        running = [w for w in self.workers if w.state == "running"]
        if not self._ready and all(self._has_beat(w) for w in running):
            self._ready = True
            self.notifier.ready()
        self.notifier.watchdog()
        shown = (self.size, self.source, tuple((w.proc.pid, w.slot, w.state, w.restarts)
                                               for w in self.workers))
        now = self.s.monotonic()
        if shown == self._shown and now - self._last_state < STATE_EVERY_S:
            return
        self._shown, self._last_state = shown, now
        draining = len(self.workers) - len(running)
        self.notifier.status(f"pool of {self.size}: {len(running)} worker(s) running"
                             + (f", {draining} finishing their step" if draining else ""))
        state = {"pid": os.getpid(), "host": socket.gethostname(), "vault": str(self.vault.root),
                 "started_at": self.started_at, "version": __version__, "size": self.size,
                 "source": self.source,
                 "workers": [{"pid": w.proc.pid, "slot": w.slot, "state": w.state,
                              "restarts": w.restarts, "started_at": w.started_at}
                             for w in sorted(self.workers, key=lambda w: w.slot)]}
        try:
            pool.write_state(self.state_path, state, self.s.clock())
        except OSError as e:  # disk full: `ps` shows the workers without their pool
            log.warning("pool state not written: %s", e)

    def _has_beat(self, w: Worker) -> bool:
        try:
            return fs.exists(self.vault.daemons_dir / f"{socket.gethostname()}.{w.proc.pid}.json")
        except OSError:
            return False

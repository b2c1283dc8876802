"""The daemon's side of hooks: keep one hook process running beside it.

The daemon delivers no hook itself (daemon/hook_child.py says why): at each
tick and during long steps it calls `HookKeeper.keep(config)`, which starts the
hook process when the config declares hooks and none runs, and starts it again
(at most every RESTART_S) when it died; at stop, `stop()` TERMs it, then KILLs
it after a grace. A delivery cut short by a stop or a kill is delivered again
by whichever process takes the hook's lock next: the cursor moves only after a
delivery succeeded. The process dies with the daemon (PR_SET_PDEATHSIG) and
logs to the daemon's stderr, in the daemon's format. In a worker pool
(`daemon --workers N`, daemon/pool.py) only the worker of slot 1 keeps one: N
hook processes on a host would deliver nothing more (one deliverer per hook
anyway), and slot 1 is the last a shrinking pool drains.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable

from modulatio_d.daemon import logfmt
from modulatio_d.daemon.child import describe_status
from modulatio_d.daemon.deadman import die_with_parent
from modulatio_d.store.config import Config
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.hooks")
RESTART_S = 5.0
POOL_SLOT_ENV = "MODULATIO_POOL_SLOT"
STOP_GRACE_S = 5.0


class HookKeeper:
    def __init__(self, vault: Vault, env: dict[str, str],
                 monotonic: Callable[[], float] = time.monotonic):
        self.vault = vault
        self.env = env
        self.monotonic = monotonic
        self.proc: subprocess.Popen | None = None
        self._started = float("-inf")
        self.wanted = env.get(POOL_SLOT_ENV, "1") == "1"  # see the module doc

    def keep(self, config: Config) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            log.warning("the hook process %d ended (%s): starting another", self.proc.pid,
                        describe_status(self.proc.returncode))
            self.proc = None
        if self.proc is not None or not config.hooks or not self.wanted:
            return
        if self.monotonic() - self._started < RESTART_S:
            return
        self._started = self.monotonic()
        root = logging.getLogger()
        fmt = "json" if any(isinstance(h.formatter, logfmt.JsonFormatter)
                            for h in root.handlers) else "text"
        level = logging.getLevelName(root.getEffectiveLevel()).lower()
        parent = os.getpid()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "modulatio_d.daemon.hook_child",
                 str(self.vault.root), "--log-format", fmt, "--log-level", level],
                stdin=subprocess.DEVNULL, env=self.env, cwd=self.vault.root,
                process_group=0, preexec_fn=lambda: die_with_parent(parent))
        except OSError as e:
            log.error("cannot start the hook process: %s", e)
            return
        log.info("hook process %d started (%d hook(s))", self.proc.pid, len(config.hooks))

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

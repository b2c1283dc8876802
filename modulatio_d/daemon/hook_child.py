"""The hook process: delivers the vault's hooks beside a daemon, never inside its loop.

Why a child process (daemon/hooks.py starts one per daemon): a hook is a
network call or a command that may hang, and a deliverer is a loop of its own
(backoff waits, one hook's failures holding only that hook). In a process of its
own none of it can slow, block or crash the claiming and running of plans; the
kernel kills it with its daemon (PR_SET_PDEATHSIG), its daemon restarts it if it
dies. Inside it, one thread per declared hook (daemon/hook_worker.py), each
holding its hook's lock while it delivers, so one slow hook does not delay the
others; only the holder of a hook's lock delivers it, so of the several hook
processes of a vault (one per daemon, on every host) exactly one delivers
each hook.

This process reads `.modulatio/config.yaml` itself, with the daemon's trust
checks (store/trust.py): a config that is refused leaves the hooks read before
in force. Every STALE_CHECK_S it also looks at the daemons' heartbeats and logs
`daemon_stale` once per stale heartbeat (the first process to create the
marker `.modulatio/daemons/.<host>.<pid>.stale` with O_EXCL tells it; a marker
whose heartbeat file is gone is removed).

Run as: python -P -m modulatio_d.daemon.hook_child VAULT [--log-format F] [--log-level L]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from modulatio_d.core.errors import BadFile
from modulatio_d.core.times import utcnow
from modulatio_d.daemon import logfmt
from modulatio_d.daemon.hook_worker import Worker
from modulatio_d.store import atomic, config, fs, heartbeat, trust
from modulatio_d.store.events import EventLog
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.hooks")
STALE_CHECK_S = 15.0


class HookProcess:
    def __init__(self, vault: Vault, environ: dict[str, str]):
        self.vault = vault
        self.environ = environ
        self.events = EventLog(vault.events_path)
        self.halt = threading.Event()
        self.config = config.Config()
        self.workers: dict[str, Worker] = {}
        self._sig: object = None
        self._told: set[str] = set()
        self._last_stale = 0.0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.halt.set())
        signal.signal(signal.SIGINT, lambda *_: self.halt.set())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the config is watched anyway
        try:
            while not self.halt.is_set():
                self._load()
                self._align()
                if time.monotonic() - self._last_stale >= STALE_CHECK_S:
                    self._last_stale = time.monotonic()
                    self._stale()
                self.halt.wait(self._poll())
        finally:
            for w in self.workers.values():
                w.stop()
            for w in self.workers.values():
                w.join(timeout=2.0)
        return 0

    def _poll(self) -> float:
        return min(1.0, self.config.poll_interval)

    def _once(self, message: str, level: int = logging.ERROR) -> None:
        if message not in self._told:
            self._told.add(message)
            log.log(level, "%s", message)

    def _load(self) -> None:
        path = self.vault.config_path
        try:
            st = fs.stat_of(path)
            sig: object = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            st, sig = None, None
        if sig == self._sig:
            return
        self._sig = sig
        try:
            loaded = config.load(path)
            policy = trust.Policy.build(self.vault.root, loaded.trusted_group, config_path=path)
            problem = policy.problem(path, st) if st is not None else None
            if problem is not None:
                raise problem
        except BadFile as e:
            self._once(f"hooks: the config is refused, the hooks read before stand: {e}")
            return
        for refused in loaded.refused_hooks:
            self._once(f"hook refused: {refused}")
        self.config = loaded

    def _align(self) -> None:
        """One worker per declared hook, running the hook as declared now."""
        wanted = {spec.name: spec for spec in self.config.hooks}
        for name, worker in list(self.workers.items()):
            if wanted.get(name) != worker.spec or not worker.is_alive():
                worker.stop()
                worker.join(timeout=max(1.0, worker.spec.timeout + 1))
                del self.workers[name]
        for name, spec in wanted.items():
            if name not in self.workers:
                worker = Worker(self.vault, spec, self.events, self.environ, utcnow,
                                self._poll)
                self.workers[name] = worker
                worker.start()

    def _stale(self) -> None:
        limit = max(60.0, 3 * 30.0)
        try:
            beats = heartbeat.read_all(self.vault.daemons_dir)
        except OSError:
            return
        known = {_marker(info) for info in beats}
        for name in fs.names(self.vault.daemons_dir):
            if name.startswith(".") and name.endswith(".stale") and name not in known:
                try:  # its heartbeat was removed: a daemon of that name may be told again
                    fs.unlink(self.vault.daemons_dir / name, missing_ok=True)
                except OSError:
                    pass
        for info in beats:
            try:
                limit = max(60.0, 3 * float(info.get("tick_seconds") or 30.0))
            except (TypeError, ValueError):
                pass
            if info["live"] and info["age_s"] <= limit:
                continue
            marker = self.vault.daemons_dir / _marker(info)
            try:
                atomic.write_new(marker, b"")
            except FileExistsError:
                continue
            except OSError as e:
                self._once(f"daemon_stale not recorded: {e}", logging.WARNING)
                continue
            self.events("daemon_stale", host_stale=info.get("host"), pid_stale=info.get("pid"),
                        last_tick=info.get("last_tick"), age_s=info["age_s"],
                        alive=info["live"])


def _marker(info: dict) -> str:
    """`.<host>.<pid>.stale` for the heartbeat `<host>.<pid>.json`."""
    return f".{os.path.basename(str(info['file']))[:-len('.json')]}.stale"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="modulatio-hooks")
    p.add_argument("vault")
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    journal = logfmt.is_journal(sys.stderr, os.environ)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logfmt.JsonFormatter(journal) if args.log_format == "json"
                         else logfmt.TextFormatter(journal))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(args.log_level.upper())
    return HookProcess(Vault(args.vault), dict(os.environ)).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

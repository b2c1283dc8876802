"""The readers, commands and daemon run under the contract of issue 9 (item 8), named once.

The contract tests (tests/unit/test_contract_readers.py, tests/e2e/test_contract_consumers.py)
reach modulatio_d only through this table and these helpers: when a function is
renamed or moved, fix the one line here.

- READERS: for each kind of vault file, where it lives and the store function
  that reads it (BadFile is its only allowed failure).
- COMMANDS: the commands people and monitors run, through the CLI entry point.
- run_daemon_once: a real Daemon (`modulatio daemon --once`) in this process, with
  every child process it starts replaced by a script that sleeps 20 ms, so that
  steps, agents and reflectors drawn at random are prepared exactly as for real
  (argv, environment, folder: everything Popen checks) but never run.
"""

from __future__ import annotations

import io
import itertools
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

from modulatio_d import cli
from modulatio_d.core import markdown, peek
from modulatio_d.core.errors import BadFile
from modulatio_d.core.plan import parse_plan
from modulatio_d.ops.init import init
from modulatio_d.store import config, cron_entries, events, heartbeat, owned_keys, tickets, usage
from modulatio_d.store.plan_file import read_plan
from modulatio_d.store.vault import Vault

HB_NAME = f"{socket.gethostname()}.4194000.json"
READERS: dict[str, tuple[str, Callable[[Vault, Path], object]]] = {
    "plan": ("P/plans/P-P-001.md", lambda v, p: read_plan(v, p).plan),
    "cron": ("P/cron/P-C-001.md", cron_entries.read_entry),
    "ticket": ("P/tickets/P-P-001-T-01.md", tickets.read_ticket),
    "config": (".modulatio/config.yaml", lambda v, p: config.load(p)),
    "usage": ("P/plans/P-P-001.usage.jsonl",
              lambda v, p: (usage.read_lines(p, warn=True), usage.totals(p))),
    "events": (".modulatio/events.jsonl",
               lambda v, p: (events.read(p), events.read(p, ("file_refused", "step_ended")))),
    "heartbeat": (f".modulatio/daemons/{HB_NAME}",
                  lambda v, p: (heartbeat.read_all(p.parent), heartbeat.freshest(p.parent))),
    "record": (".modulatio/state/P/P-P-001.json", lambda v, p: owned_keys.load(p)),
}
MARKDOWN_KINDS = ("plan", "cron", "ticket", "config")
JSON_KINDS = ("usage", "events", "heartbeat", "record")


def parse_text(text: str) -> object:
    """The pure readers: the frontmatter split and load, the plan model, the status peek."""
    peek.peek_status(text)
    return parse_plan(markdown.load(Path("P-P-001.md"), text), "P-P-001")


COMMANDS = (("status",), ("status", "--json"), ("metrics",), ("validate",), ("plan", "list"),
            ("plan", "list", "--json"), ("plan", "show", "P-P-001"),
            ("plan", "show", "P-P-001", "--json"), ("cron", "list"), ("ticket", "list"),
            ("heartbeat", "--all"))

SETTLED = datetime.now(UTC).timestamp() - 3600
"""The mtime given to every file written: settled, so daemons judge it at once."""


class Vaults:
    """A fresh vault per example (hypothesis runs many in one test function)."""

    def __init__(self, base: Path):
        self.base = base
        self.count = itertools.count()

    def new(self, files: dict[str, bytes | str] | None = None) -> Vault:
        vault = init(self.base / f"v{next(self.count)}")
        for folder in ("plans", "cron", "tickets"):
            (vault.root / "P" / folder).mkdir(parents=True)
        for rel, data in (files or {}).items():
            path = vault.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str)
                             else data)
            os.utime(path, (SETTLED, SETTLED))
        return vault


@contextmanager
def production_stack(room: int = 900):
    """The recursion limit a daemon or a command has (1000, a few dozen frames used),
    instead of the one hypothesis sets while a test runs (2,000 frames more): a file
    nested too deep must fail here as it fails there."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + room)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def read(kind: str, vault: Vault) -> object | None:
    """The reader of `kind` on its file in `vault`: its value, or None when it refused it."""
    rel, reader = READERS[kind]
    try:
        with production_stack():
            return reader(vault, vault.root / rel)
    except BadFile as e:
        assert str(e.path) in str(e) and e.reason, f"a refusal says which file and why: {e}"
        return None


def commands(vault: Vault, extra: tuple[tuple[str, ...], ...] = ()) -> dict[tuple[str, ...],
                                                                         tuple[int, str]]:
    """Run every command of COMMANDS (and `extra`) on `vault` in this process.

    Each must exit 0 or 1 (heartbeat also 2, CRITICAL), say why when 1, and raise nothing. Returns
    {argv: (exit code, stdout + stderr)}.
    """
    results = {}
    for argv in (*COMMANDS, *extra):
        out, err = io.StringIO(), io.StringIO()
        ctx = cli.Context(environ={}, cwd=vault.root, out=out, err=err)
        with production_stack():
            code = cli.main([*argv, "--vault", str(vault.root)], ctx)
        # heartbeat speaks the monitoring plugins' codes: 2 is CRITICAL (no live daemon).
        allowed = (0, 1, 2) if argv[0] == "heartbeat" else (0, 1)
        assert code in allowed, f"`modulatio {' '.join(argv)}` exited {code}: {err.getvalue()}"
        if code == 1 and argv[0] != "heartbeat":
            assert err.getvalue().strip() or out.getvalue().strip(), "a failure says why"
        results[argv] = (code, out.getvalue() + err.getvalue())
    return results


FAKE_STEP = "#!/bin/sh\n# Stands in for every child the daemon starts: alive a moment, then exit 0.\n" \
    "sleep 0.02\n"


def _fake_popen(program: Path) -> type[subprocess.Popen]:
    class FakePopen(subprocess.Popen):
        """Popen that checks and prepares everything as asked (argv, environment, folder,
        descriptors), then runs `program` instead: a moment alive, so the daemon's wait
        loop runs as it does for a real step."""

        def __init__(self, args, *a, **kwargs):
            kwargs["executable"] = str(program)
            super().__init__(args, *a, **kwargs)

    return FakePopen


def run_daemon_once(vault: Vault, tick_seconds: float = 0.2) -> list[dict]:
    """`modulatio daemon --once` on `vault` in this process, children replaced (FAKE_STEP).

    Returns the events it logged. Whatever the daemon raises passes through. The
    signal handlers it installs are put back afterwards.
    """
    from modulatio_d.daemon.loop import Daemon

    fake = vault.root.parent / "fake-step"
    if not fake.exists():
        fake.write_text(FAKE_STEP)
        fake.chmod(0o755)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    wakeup = signal.set_wakeup_fd(-1)
    try:
        with mock.patch.object(subprocess, "Popen", _fake_popen(fake)), production_stack():
            Daemon(vault, [], tick_seconds, True, lambda: datetime.now(UTC), {}).run()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(wakeup)
    return events.read(vault.events_path)

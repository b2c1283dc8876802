"""The decision after each attempt of a sub-objective: asking a reflector.

Without one, the default verdict decides (core/verdict.py: the step's
`retries` and `on_failure`). A plan's `reflector:` (else the config's)
replaces it: a command, run in `sh -c` with the attempt as JSON on stdin,
that prints one JSON object
`{"decision": "continue|retry|pause|revise-major|abort", "reason": "..."}`;
or `plugin:NAME`, a function from the entry-point group
`modulatio_d.reflectors` that takes the same dict and returns that object.
A reflector that fails, times out or answers nonsense is logged and the
default decides.

Either kind runs as a child process, like a step (child.py: its own process
group, dies with the daemon), never on the daemon's thread: the caller's
`wait` watches it the way a step is watched (runner.py passes one that keeps
the heartbeat, the systemd watchdog and cron going), so a slow reflector
cannot get the daemon killed by WatchdogSec=. After TIMEOUT_S, or on a stop
request, its process group is killed and the default decides. Its stdin,
stdout and stderr are unlinked temp files: nothing to drain while it runs.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from modulatio_d.core.plan import SubObjective
from modulatio_d.core.verdict import Decision, Outcome, Verdict, default
from modulatio_d.daemon import plugins
from modulatio_d.daemon.child import Child, Launch

log = logging.getLogger("modulatio.reflect")
GROUP = "modulatio_d.reflectors"
TIMEOUT_S = 60
MAX_ANSWER = 64 * 1024  # bytes of a reflector's output read back

Wait = Callable[[Child, float], "Outcome | None"]
"""Wait for the reflector's child up to a timeout (s): None when it exited, else why it
was stopped (TIMEOUT, INTERRUPTED). runner.py passes attempt.watch with its beats."""


def decide(reflector: str | None, step: SubObjective, outcome: Outcome, failures: int,
           attempt: dict, cwd: str, env: dict[str, str], wait: Wait | None = None) -> Verdict:
    fallback = default(step, outcome, failures)
    if not reflector:
        return fallback
    try:
        answer = _ask(reflector, {**attempt, "default_decision": fallback.decision.value},
                      cwd, env, wait or _wait_plainly)
        return Verdict(Decision(str(answer["decision"])), str(answer.get("reason", reflector)))
    except Exception as e:  # a broken reflector must not stop the plan
        log.warning("reflector %r failed (%s); the default decides: %s", reflector, e,
                    fallback.decision.value)
        return fallback


def _ask(reflector: str, attempt: dict, cwd: str, env: dict[str, str], wait: Wait) -> dict:
    if reflector.startswith("plugin:"):
        name = reflector.removeprefix("plugin:")
        found = plugins.target(GROUP, name)
        if found is None:
            raise LookupError(f"no plugin {name!r} in entry-point group {GROUP}")
        argv = [sys.executable, "-m", "modulatio_d.daemon.reflect_child", found]
    else:
        argv = ["/bin/sh", "-c", reflector]
    out = _run(argv, json.dumps(attempt, default=str).encode(), Path(cwd), env, wait)
    lines = out.strip().splitlines()
    if not lines:
        raise ValueError("no answer (nothing printed)")
    answer = json.loads(lines[-1])
    if not isinstance(answer, dict) or "decision" not in answer:
        raise ValueError(f"answer {answer!r} has no decision")
    return answer


def _run(argv: list[str], given: bytes, cwd: Path, env: dict[str, str], wait: Wait) -> str:
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout, \
            tempfile.TemporaryFile() as stderr:
        stdin.write(given)
        stdin.seek(0)
        child = Child(Launch(argv, env, cwd), None, (stdin, stdout, stderr))
        try:
            stopped = wait(child, TIMEOUT_S)
            code = child.wait()
            child.kill_group(signal.SIGKILL)  # whatever it left running in its group
        finally:
            child.close()
        if stopped is Outcome.TIMEOUT:
            raise TimeoutError(f"no answer within {TIMEOUT_S}s: killed")
        if stopped is not None:
            raise RuntimeError(f"stopped ({stopped.value})")
        if code != 0:
            stderr.seek(0)
            tail = stderr.read()[-2000:].decode("utf-8", "replace").strip()[-200:]
            raise RuntimeError(f"exit {code}: {tail}")
        stdout.seek(0)
        return stdout.read(MAX_ANSWER).decode("utf-8", "replace")


def _wait_plainly(child: Child, timeout: float) -> Outcome | None:
    """Without a daemon around it (tests, tools): wait, kill the group after `timeout`."""
    try:
        child.wait(timeout=timeout)
        return None
    except subprocess.TimeoutExpired:
        child.kill_group(signal.SIGKILL)
        return Outcome.TIMEOUT

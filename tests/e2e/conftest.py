"""Fixtures of the end-to-end tests: real `modulatio` processes on a real vault in
tmp_path. The plain helpers they use are in helpers.py; every test here is marked
e2e (tests/conftest.py).

- `dvault`: a DVault, a vault with project P and the test step tools/step.py.
- `daemons`: a factory that starts daemons on dvault; teardown SIGKILLs each one's
  process group and then every process still carrying this vault in its
  MODULATIO_VAULT (step children and grandchildren the tests left behind).
- `every_state`: the every-state vault of every_state.py, built once per session
  (its OPS daemon is stopped at the end of the session).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from every_state import beat_remote, build_every_state, tear_down
from helpers import PROJECT, STEP_TOOL, Daemon, DVault, kill_vault_processes

from modulatio_d.ops.init import init


@pytest.fixture
def dvault(tmp_path: Path) -> DVault:
    vault = init(tmp_path / "vault")
    (vault.root / PROJECT / "plans").mkdir(parents=True)
    (vault.root / "tools").mkdir()
    (vault.root / "tools" / "step.py").write_text(STEP_TOOL)
    return DVault(vault.root, vault)


@pytest.fixture
def daemons(dvault: DVault, tmp_path: Path):
    """start(*args, tick=0.5): a daemon on dvault; all are killed at teardown."""
    started: list[Daemon] = []

    def start(*args: str, tick: float = 0.5, env: dict[str, str] | None = None) -> Daemon:
        log_path = tmp_path / f"daemon-{len(started)}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODULATIO_")}
        full_env["MODULATIO_ALLOW_ROOT"] = "1"  # CI runs the tests as root
        full_env.update(env or {})
        d = Daemon(dvault.root, ["--tick-seconds", str(tick), *args], log_path, full_env)
        started.append(d)
        return d

    try:
        yield start
    finally:
        for d in started:
            if d.proc.poll() is None:
                try:
                    os.killpg(d.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                d.proc.wait()
        kill_vault_processes(dvault.root)


@pytest.fixture(scope="session")
def every_state_built(tmp_path_factory):
    state = build_every_state(tmp_path_factory.mktemp("every"))
    yield state
    tear_down(state)


@pytest.fixture(scope="module")
def every_state(every_state_built):
    """The session's every-state vault, its live remote heartbeat written anew for each
    module: minutes of other tests between two modules must not make it stale."""
    beat_remote(every_state_built)
    return every_state_built

"""Fixtures every test file may use: a real vault in tmp_path, the CLI in-process,
and waiting for a condition with a deadline (never a fixed sleep).

Two lanes: tests/unit/ (pure, fake clocks, in-process; `pytest -m "not e2e"`, seconds)
and tests/e2e/ (real processes, marked e2e here). Hypothesis draws fresh random
examples each run, except under HYPOTHESIS_PROFILE=ci (set by .ci/run): derandomized,
so every CI run checks the same examples and a failure there is a fact about the
commit, not about a seed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

# Bytecode caches for the test run, even where the environment sets PYTHONDONTWRITEBYTECODE
# (this project's machine images do): without them every run compiles and assertion-rewrites
# the ~200 test modules again, and every daemon a test starts compiles the package again
# (5 s of the fast lane). Before the imports below, which bring most of the package (they
# were compiled from source at every run when this came after them). __pycache__/ is
# ignored by git.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

import cli_runner  # noqa: E402
import pytest  # noqa: E402
from cli_runner import CliResult  # noqa: E402
from hypothesis import settings  # noqa: E402
from waiting import wait_for  # noqa: E402

from modulatio_d.ops.init import init  # noqa: E402
from modulatio_d.store import vault as vault_mod  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])

# CI runs every test as root, and a daemon refuses to run as root without this
# opt-in (store/trust.py): every daemon a test starts inherits it from here
# (tests/e2e/conftest.py's `daemons`, which starts daemons with a cleaned environment, sets it
# itself). Tests of the refusal remove it.
os.environ["MODULATIO_ALLOW_ROOT"] = "1"
# Commands cache rows per user (store/rowcache.py): the tests' caches go to a folder of
# their own, not the home of whoever runs them (daemons and commands started by tests
# inherit it).
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="modulatio-test-cache-")


@pytest.fixture(scope="session")
def _empty_vault(tmp_path_factory) -> Path:
    """One new, empty vault made by `modulatio init` (ops/init.py), once a session."""
    return init(tmp_path_factory.mktemp("template") / "vault").root


@pytest.fixture
def vault(tmp_path: Path, _empty_vault: Path) -> vault_mod.Vault:
    """A new, empty vault as `modulatio init` makes it, in a real folder (tmp_path/vault):
    a copy of one made once a session (init's checks, atomic writes and fsyncs for each of
    ~600 tests cost about a second of the unit lane's budget)."""
    shutil.copytree(_empty_vault, tmp_path / "vault", symlinks=True)
    return vault_mod.Vault(tmp_path / "vault")


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run `modulatio ARGV...` in this process: run_cli(*argv, env={}, cwd=tmp_path)."""

    def run(*argv: object, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> CliResult:
        return cli_runner.run_cli(*argv, env=env, cwd=cwd or tmp_path)

    return run


@pytest.fixture(name="wait_for")
def wait_for_fixture():
    return wait_for


def pytest_ignore_collect(collection_path: Path, config):
    """The fast lane (`-m "not e2e"`) does not even import tests/e2e/: every test there
    would be deselected anyway, and importing them costs seconds."""
    if config.option.markexpr.strip() == "not e2e" and collection_path.name == "e2e":
        return True
    return None


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e/ is marked e2e: `pytest -m "not e2e"` is the fast lane.
    Tests under tests/multihost/ (the GlusterFS test bed) are marked multihost and e2e;
    every test under tests/torture/ is marked torture and e2e (`pytest -m torture` runs
    that lane alone). Both run last, the torture lane at the very end: their minutes
    between two other tests would age what those share (a vault built once per session
    and judged by how long ago its daemons ticked)."""
    for item in items:
        parts = item.path.parts
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
        if "multihost" in parts:
            item.add_marker(pytest.mark.multihost)
            item.add_marker(pytest.mark.e2e)
        if "torture" in parts:
            item.add_marker(pytest.mark.torture)
            item.add_marker(pytest.mark.e2e)
    # stable: the rest keep their order; multihost, then torture, at the end
    items.sort(key=lambda item: ("torture" in item.path.parts, "multihost" in item.path.parts))

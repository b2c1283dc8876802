"""Fixtures every test file may use: a real vault in tmp_path, the CLI in-process,
and waiting for a condition with a deadline (never a fixed sleep)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from waiting import wait_for

from modulatio_d import cli
from modulatio_d.ops.init import init
from modulatio_d.store import vault as vault_mod

# CI runs every test as root, and a daemon refuses to run as root without this
# opt-in (store/trust.py): every daemon a test starts inherits it from here
# (tests/e2e/daemon_helpers.py, which starts daemons with a cleaned environment,
# sets it itself). Tests of the refusal remove it.
os.environ["MODULATIO_ALLOW_ROOT"] = "1"


@pytest.fixture
def vault(tmp_path: Path) -> vault_mod.Vault:
    """A new, empty vault made by `modulatio_d.ops.init.init` in a real folder."""
    return init(tmp_path / "vault")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run `modulatio ARGV...` in this process: run_cli(*argv, env={}, cwd=tmp_path)."""

    def run(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        ctx = cli.Context(environ=dict(env or {}), cwd=cwd or tmp_path, out=out, err=err)
        code = cli.main([str(a) for a in argv], ctx)
        return CliResult(code, out.getvalue(), err.getvalue())

    return run



@pytest.fixture(name="wait_for")
def wait_for_fixture():
    return wait_for


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e/ is marked e2e: `pytest -m "not e2e"` is the fast lane."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)

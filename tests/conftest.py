"""Fixtures every test file may use: a real vault in tmp_path, the CLI in-process,
and waiting for a condition with a deadline (never a fixed sleep)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest
from waiting import wait_for

from modulatio_d import cli
from modulatio_d.store import vault as vault_mod


@pytest.fixture
def vault(tmp_path: Path) -> vault_mod.Vault:
    """A new, empty vault made by `modulatio_d.store.vault.init` in a real folder."""
    return vault_mod.init(tmp_path / "vault")


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
    """Every test under tests/e2e/ is marked e2e: `pytest -m "not e2e"` is the fast lane.
    Every test under tests/torture/ is marked torture and e2e (real processes, minutes):
    `pytest -m torture` runs that lane alone. The torture lane runs last: its minutes
    between two other tests would age what they share (a vault built once per session
    and judged by how long ago its daemons ticked)."""
    for item in items:
        parts = item.path.parts
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
        if "torture" in parts:
            item.add_marker(pytest.mark.torture)
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: "torture" in item.path.parts)  # stable: order kept within

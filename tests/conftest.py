"""Fixtures every test file may use: a real vault in tmp_path, the CLI in-process,
and waiting for a condition with a deadline (never a fixed sleep)."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from modulatio_d import cli
from modulatio_d import vault as vault_mod


@pytest.fixture
def vault(tmp_path: Path) -> vault_mod.Vault:
    """A new, empty vault made by `modulatio_d.vault.init` in a real folder."""
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



def wait_for(condition, timeout: float = 10.0, interval: float = 0.005, what: str = ""):
    """Poll `condition()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


@pytest.fixture(name="wait_for")
def wait_for_fixture():
    return wait_for

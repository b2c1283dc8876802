"""The one in-process runner of `modulatio ARGV...` that tests use (no child process:
`cli.main` with an explicit environment, folder and output streams)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

from modulatio_d import cli


class CliResult(NamedTuple):
    code: int
    out: str
    err: str


def run_cli(*argv: object, cwd: Path, env: dict[str, str] | None = None,
            out: io.StringIO | None = None) -> CliResult:
    """`modulatio ARGV...` run by `cli.main` in this process, in folder `cwd`, with only
    `env` as its environment; `out` replaces the captured stdout (a fake terminal, say)."""
    out = out if out is not None else io.StringIO()
    err = io.StringIO()
    ctx = cli.Context(environ=dict(env or {}), cwd=cwd, out=out, err=err)
    code = cli.main([str(a) for a in argv], ctx)
    return CliResult(code, out.getvalue(), err.getvalue())

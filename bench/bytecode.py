"""The package's bytecode, compiled before anything is timed.

`pip install` compiles a package's modules when it installs them, so a user's
`modulatio` imports bytecode. A checkout installed editable (`pip install -e`)
compiles them at the first import, unless the environment says
PYTHONDONTWRITEBYTECODE (this project's machines do): then every interpreter a
benchmark starts compiles the whole package from source: a daemon on an empty
vault took 0.28-0.33 s, 0.17-0.20 s with the bytecode (docs/benchmarks.md, "Fifth
pass"). The benchmarks that start interpreters call `compile_package()` first and
time what a user runs."""

from __future__ import annotations

import compileall
import os

import modulatio_d


def compile_package() -> None:
    """Write the bytecode of every module of modulatio_d that lacks a current one."""
    folder = os.path.dirname(modulatio_d.__file__)
    if not compileall.compile_dir(folder, quiet=1):
        raise SystemExit(f"cannot compile the package's bytecode in {folder}")

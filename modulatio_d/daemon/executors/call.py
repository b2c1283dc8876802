"""`call: module.path:function` steps: the function runs in a child Python.

The child (call_child.py, started with `python -P`) puts the step's folder
and the vault in front of sys.path and PYTHONPATH, imports the module, calls
the function with a StepInfo, prints the summary it returns, and appends any
usage lines it returns to $MODULATIO_USAGE_FILE.
"""

from __future__ import annotations

import sys

from modulatio_d.daemon.child import Launch


def launch(ctx, target: str, extra_env: dict[str, str] | None = None) -> Launch:
    # -P: the step's folder (the working folder) is not put on sys.path before the
    # package is found; call_child adds it (and the vault) once it runs.
    argv = [sys.executable, "-P", "-m", "modulatio_d.daemon.executors.call_child", target]
    return Launch(argv=argv, env=ctx.python_env(extra_env), cwd=ctx.cwd())

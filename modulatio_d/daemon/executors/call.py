"""`call: module.path:function` steps: the function runs in a child Python.

The child (call_child.py) imports the module with the step's folder and the
vault on sys.path, calls the function with a StepInfo, prints the summary it
returns, and appends any usage lines it returns to $MODULATIO_USAGE_FILE.
"""

from __future__ import annotations

import sys

from modulatio_d.daemon.child import Launch


def launch(ctx, target: str, extra_env: dict[str, str] | None = None) -> Launch:
    argv = [sys.executable, "-m", "modulatio_d.daemon.executors.call_child", target]
    return Launch(argv=argv, env=ctx.python_env(extra_env), cwd=ctx.cwd())

"""The child side of `call:` steps and plugin agents (run as `python -P -m`).

The function gets one argument, a StepInfo, and may return None, a summary
string, or a dict {"summary": str, "usage": [usage lines as dicts]}. An exception is the
step's failure: its traceback goes to the step's log and the exit code is 1.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class StepInfo:
    vault: str
    project: str
    plan_id: str
    plan_file: str
    step_index: int
    attempt: int
    objective: str
    usage_file: str
    fencing_token: str
    options: dict


def _info() -> StepInfo:
    e = os.environ
    return StepInfo(e["MODULATIO_VAULT"], e["MODULATIO_PROJECT"], e["MODULATIO_PLAN_ID"],
                    e["MODULATIO_PLAN_FILE"], int(e["MODULATIO_STEP_INDEX"]),
                    int(e["MODULATIO_ATTEMPT"]), e["MODULATIO_OBJECTIVE"],
                    e["MODULATIO_USAGE_FILE"], e["MODULATIO_FENCING_TOKEN"],
                    json.loads(e.get("MODULATIO_AGENT_OPTIONS") or "{}"))


def _find_modules_in_the_step_folder() -> None:
    """The step's folder and the vault first on sys.path (for the import here) and on
    PYTHONPATH (for the Python processes the function starts), as documented. Only
    now: this module itself was found before them, in the installed package."""
    paths = [p for p in os.environ.pop("MODULATIO_CALL_PATH", "").split(os.pathsep) if p]
    sys.path[0:0] = paths
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *([old] if old else [])])


def main(target: str) -> int:
    _find_modules_in_the_step_folder()
    module_name, _, attr = target.partition(":")
    fn = getattr(importlib.import_module(module_name), attr)
    result = fn(_info())
    summary, lines = (result.get("summary"), result.get("usage") or []) \
        if isinstance(result, dict) else (result, [])
    if lines:
        with open(os.environ["MODULATIO_USAGE_FILE"], "a", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
    if summary:
        print(str(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

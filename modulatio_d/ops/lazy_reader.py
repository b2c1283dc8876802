"""The plan reader, imported the first time a command has to parse a file.

A warm `plan list`, `status` or `validate` parses nothing (their row caches hold what
each file said), and importing the plan reader (core/plan.py and the YAML readers) is
about a third of such a run's start-up. So the commands that read plans reach it
through here: `reader(name)` imports a module of READER once (an `import` statement a
row, for a module loaded already, costs 3 us: 1% of a cold run), `read_plan` is
store/plan_file.read_plan through it. parallel.rows preloads READER before it forks.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modulatio_d.store.plan_file import ReadPlan
    from modulatio_d.store.vault import Vault

READER = ("modulatio_d.store.plan_file", "modulatio_d.core.people",
          "modulatio_d.core.modulatio_shape")
"""What parsing a plan into a command's row imports."""


@cache
def reader(name: str) -> ModuleType:
    """A module of READER, imported on the first call."""
    return import_module(name)


def read_plan(vault: Vault, path: Path) -> ReadPlan:
    """store/plan_file.read_plan (with the records it reads beside the plan)."""
    return reader("modulatio_d.store.plan_file").read_plan(vault, path)

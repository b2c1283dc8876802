"""How a sub-objective becomes a child process: one module per executor.

Every executor turns a step into a `Launch` (argv, environment, folder); the
runner starts and watches them all the same way (child.py). The environment
is the daemon's plus the MODULATIO_* variables (docs/daemon.md, "Running a
sub-objective") and the step's own `env`.

The built-in executors that are Python modules of this package (the mock
agent, call_child) run as `python -P -m modulatio_d...`: -P keeps the working
folder off sys.path, and the vault's folders are never on it before the
package's own, so no file in the vault (a `<PROJECT>/modulatio_d/.../mock.py`)
can stand in for them. The mock needs no folder and runs in `/`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modulatio_d.core.errors import StepError
from modulatio_d.core.plan import Plan, StepKind, SubObjective
from modulatio_d.daemon.child import Launch
from modulatio_d.store.config import Config

CALL_PATH = "MODULATIO_CALL_PATH"
"""The folders call_child puts in front of sys.path and PYTHONPATH (os.pathsep-joined)."""


@dataclass(frozen=True)
class StepContext:
    vault: Path
    project: str
    plan: Plan
    step: SubObjective
    attempt: int
    token: int
    usage_file: Path
    config: Config
    base_env: dict[str, str]

    def cwd(self) -> Path:
        project_dir = self.vault / self.project
        chosen = self.step.cwd or self.plan.cwd
        folder = (project_dir / chosen) if chosen else project_dir
        if not folder.is_dir():
            raise StepError(f"{self.plan.path}: folder {folder} for step {self.step.index + 1} "
                            f"does not exist; fix cwd or create it")
        return folder

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(self.base_env)
        env.update({
            "MODULATIO_VAULT": str(self.vault),
            "MODULATIO_PROJECT": self.project,
            "MODULATIO_PLAN_ID": self.plan.id,
            "MODULATIO_PLAN_FILE": str(self.plan.path),
            "MODULATIO_STEP_INDEX": str(self.step.index),
            "MODULATIO_ATTEMPT": str(self.attempt),
            "MODULATIO_OBJECTIVE": self.step.objective or self.step.title,
            "MODULATIO_USAGE_FILE": str(self.usage_file),
            "MODULATIO_FENCING_TOKEN": f"{self.plan.id}:{self.token}",
        })
        env.update(extra or {})
        env.update(self.step.env)
        return env

    def python_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """env() plus CALL_PATH: the step's folder and the vault, where a `call:` step's
        module is found. They are not put on PYTHONPATH here: the child's own module
        (modulatio_d...call_child) would then be looked up in the vault first, and a
        vault file named like it would run instead. call_child adds them itself."""
        env = self.env(extra)
        env[CALL_PATH] = os.pathsep.join([str(self.cwd()), str(self.vault)])
        return env


def launch(ctx: StepContext) -> Launch:
    from modulatio_d.daemon.executors import agent, call, shell

    kind = ctx.step.kind
    if kind is StepKind.RUN:
        return shell.launch(ctx)
    if kind is StepKind.CALL:
        return call.launch(ctx, ctx.step.call)
    return agent.launch(ctx)

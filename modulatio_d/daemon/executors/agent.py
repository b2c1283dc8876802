"""Agent steps: text-only sub-objectives and `objective:` + `agent:`.

An agent name resolves, in order, through `.modulatio/config.yaml` (`run:` a
command, or `use:` another agent), the built-in `mock`, and the entry-point
group `modulatio_d.agents` (a `module:function` run like a `call:` step). The
objective reaches the agent as $MODULATIO_OBJECTIVE; an agent's config
options (every key but run/use) as JSON in $MODULATIO_AGENT_OPTIONS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from modulatio_d.core.errors import StepError
from modulatio_d.daemon import plugins
from modulatio_d.daemon.child import Launch
from modulatio_d.daemon.executors import call

GROUP = "modulatio_d.agents"
BUILTINS = {"mock": "modulatio_d.daemon.executors.mock"}
OUTSIDE = Path("/")
"""The working folder of the built-in agents, which need none: nothing of the vault is there."""


def launch(ctx) -> Launch:
    name, options, seen = ctx.step.agent, {}, []
    while True:
        seen.append(name)
        spec = ctx.config.agents.get(name)
        if spec is None:
            break
        options = {**spec.options, **options}
        if spec.run is not None:
            argv = ["/bin/sh", "-c", spec.run] if isinstance(spec.run, str) else list(spec.run)
            return Launch(argv, ctx.env(_agent_env(name, options)), ctx.cwd())
        if spec.use in seen:
            raise StepError(f"agent {name!r} in .modulatio/config.yaml uses itself in a loop: "
                            + " -> ".join([*seen, spec.use]))
        name = spec.use
    extra = _agent_env(name, options)
    if name in BUILTINS:
        ctx.cwd()  # the step's folder must exist all the same: a typo in cwd is the plan's error
        return Launch([sys.executable, "-P", "-m", BUILTINS[name]], ctx.env(extra), OUTSIDE)
    found = plugins.target(GROUP, name)
    if found is not None:
        return call.launch(ctx, found, extra)
    raise StepError(f"{ctx.plan.path}: step {ctx.step.index + 1} names agent {name!r}, which is "
                    f"neither in .modulatio/config.yaml agents, built in (mock), nor installed "
                    f"as a plugin ({GROUP}); add it to the config")


def _agent_env(name: str, options: dict) -> dict[str, str]:
    return {"MODULATIO_AGENT": name, "MODULATIO_AGENT_OPTIONS": json.dumps(options, default=str)}

"""`.modulatio/config.yaml`: agents, defaults and the vault's time zone.

    timezone: Europe/Berlin            # cron entries without their own
    defaults:
      timeout: 1h                      # per attempt, when a step sets none
    reflector: ./reflect.sh            # optional: a command that prints a JSON decision
    trusted_group: modulatio           # whose files the daemon acts on (store/trust.py);
                                       # default: the vault folder's group
    agents:
      default: {use: mock}             # text-only sub-objectives go here
      writer: {run: "python3 tools/writer.py"}   # a command (string: sh -c; list: argv)

An agent entry either runs a command (`run`) or names another agent (`use`):
a built-in (`mock`) or one from the entry-point group `modulatio_d.agents`.
A missing file is the default config; a malformed one is a BadFile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modulatio_d.core import markdown, names
from modulatio_d.core.errors import FileFault
from modulatio_d.core.plan import parse_duration
from modulatio_d.store.vault import decode

DEFAULT_TIMEOUT = 3600.0


@dataclass(frozen=True)
class AgentSpec:
    name: str
    run: str | tuple[str, ...] | None = None
    use: str | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    timezone: str | None = None
    default_timeout: float = DEFAULT_TIMEOUT
    reflector: str | None = None
    trusted_group: str | None = None
    agents: dict[str, AgentSpec] = field(
        default_factory=lambda: {"default": AgentSpec("default", use="mock")})


def load(path: Path) -> Config:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config()
    text = decode(path, raw)
    if not text.strip():
        return Config()
    data = markdown.load_mapping(path, text)
    fail = FileFault(path, lambda key: markdown.line_of(data, key))

    unknown = set(map(str, data)) - {"timezone", "defaults", "reflector", "agents",
                                     "trusted_group"}
    if unknown:
        fail(f"unknown keys {sorted(unknown)}", sorted(unknown)[0],
             "use timezone, defaults, reflector, agents, trusted_group")
    group = data.get("trusted_group")
    if group is not None and (not isinstance(group, str) or not group.strip()):
        fail("trusted_group must be the name of a group, like modulatio", "trusted_group")
    tz = data.get("timezone")
    if tz is not None and not isinstance(tz, str):
        fail("timezone must be an IANA name like Europe/Berlin", "timezone")
    timeout = DEFAULT_TIMEOUT
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        fail("defaults must be a mapping", "defaults")
    if defaults.get("timeout") is not None:
        try:
            timeout = parse_duration(defaults["timeout"])
        except ValueError as e:
            fail(f"defaults.timeout: {e}", "defaults")
    reflector = data.get("reflector")
    if reflector is not None and not isinstance(reflector, str):
        fail("reflector must be a command string", "reflector")
    agents = {"default": AgentSpec("default", use="mock")}
    raw_agents = data.get("agents") or {}
    if not isinstance(raw_agents, dict):
        fail("agents must be a mapping of names to {run: ...} or {use: ...}", "agents")
    for name, spec in raw_agents.items():
        name = str(name)
        if not names.is_valid(name):
            fail(f"agent name {name!r} is not a valid name", "agents")
        if not isinstance(spec, dict) or ("run" in spec) == ("use" in spec):
            fail(f"agent {name!r} needs exactly one of run (a command) or use (another agent)",
                 "agents")
        run = spec.get("run")
        if run is not None and not (isinstance(run, str) or (
                isinstance(run, list) and run and all(isinstance(a, str) for a in run))):
            fail(f"agent {name!r}: run must be a command string or a list of arguments", "agents")
        options = {str(k): v for k, v in spec.items() if k not in ("run", "use")}
        agents[name] = AgentSpec(name, run=tuple(run) if isinstance(run, list) else run,
                                 use=spec.get("use"), options=options)
    return Config(timezone=tz, default_timeout=timeout, reflector=reflector,
                  trusted_group=group, agents=agents)

"""`.modulatio/config.yaml`: agents, defaults and the vault's time zone.

    timezone: Europe/Berlin            # cron entries without their own
    defaults:
      timeout: 1h                      # per attempt, when a step sets none
      reflection_window: 200           # reflection entries a plan file keeps (older: beside it)
    reflector: ./reflect.sh            # optional: a command that prints a JSON decision
    poll_interval: 1s                  # on a network filesystem: see daemon/poll.py
    trusted_group: modulatio           # whose files the daemon acts on (store/trust.py);
                                       # default: the vault folder's group
    retention:                         # docs/operations.md, "Retention"
      max_log_bytes: 4M                # a step attempt's log: head and tail kept
      older_than: 30d                  # finished plans archived by the daemons after
      keep_last: 20                    # per project, the newest finished ones stay
      archive: true                    # false: removed instead of archived
      events_max_bytes: 16M            # events.jsonl rotated at this size
    agents:
      default: {use: mock}             # text-only sub-objectives go here
      writer: {run: "python3 tools/writer.py"}   # a command (string: sh -c; list: argv)
    hooks:                             # projectors of events.jsonl (core/hooks.py)
      notify: {events: [plan_failed], run: "python3 tools/notify.py"}
    capacity:                          # plans executing at once (core/capacity.py)
      vault: 4
      projects: {SALES: 2}
      headroom: {slots: 1, min_priority: 80}

An agent entry either runs a command (`run`) or names another agent (`use`):
a built-in (`mock`) or one from the entry-point group `modulatio_d.agents`.
A missing file is the default config; a malformed one is a BadFile, and so is a link
(never followed), a file that is not a regular file, or one over 1 MiB (store/fs/).
A bad hook entry does not refuse the file: that hook alone is refused
(`Config.refused_hooks`, each a BadFile at its line) and the others stand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from modulatio_d.core import capacity as capacity_rules
from modulatio_d.core import markdown, names
from modulatio_d.core.capacity import Capacity
from modulatio_d.core.errors import BadFile, FileFault
from modulatio_d.core.hooks import HookSpec, parse_hooks
from modulatio_d.core.plan import parse_duration
from modulatio_d.store import events, fs, reflections
from modulatio_d.store.steplogs import DEFAULT_MAX_LOG_BYTES
from modulatio_d.store.vault import decode

DEFAULT_TIMEOUT = 3600.0
DEFAULT_POLL_INTERVAL = 1.0


@dataclass(frozen=True)
class AgentSpec:
    name: str
    run: str | tuple[str, ...] | None = None
    use: str | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Retention:
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
    older_than: float | None = None  # seconds; None: the daemons prune nothing
    keep_last: int = 0
    archive: bool = True
    events_max_bytes: int = events.DEFAULT_MAX_BYTES


_SIZE = re.compile(r"(\d+)\s*([KMG]?)(?:i?B)?", re.IGNORECASE)


def parse_size(value: object) -> int:
    """Bytes: a whole number, or one with K, M or G (KiB, MiB, GiB: powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"{value!r} is not a size: write bytes, or a number with K, M or G")
    return int(m.group(1)) * 1024 ** " KMG".index((m.group(2) or " ").upper())


def _duration(fail: FileFault, raw: object, default: float | None, what: str,
              key: str) -> float | None:
    """A duration setting (`30s`, `5m`, a number of seconds), or `default` when unset."""
    if raw is None:
        return default
    try:
        return parse_duration(raw)
    except ValueError as e:
        fail(f"{what}: {e}", key)


def _retention(fail: FileFault, raw: object) -> Retention:
    if raw is None:
        return Retention()
    if not isinstance(raw, dict):
        fail("retention must be a mapping (max_log_bytes, older_than, keep_last, archive, "
             "events_max_bytes)", "retention")
    known = {"max_log_bytes", "older_than", "keep_last", "archive", "events_max_bytes"}
    unknown = set(map(str, raw)) - known
    if unknown:
        fail(f"retention has unknown keys {sorted(unknown)}", "retention",
             "use " + ", ".join(sorted(known)))
    out: dict = {}
    try:
        for key in ("max_log_bytes", "events_max_bytes"):
            if raw.get(key) is not None:
                out[key] = parse_size(raw[key])
    except ValueError as e:
        fail(f"retention: {e}", "retention")
    out["older_than"] = _duration(fail, raw.get("older_than"), None, "retention", "retention")
    keep = raw.get("keep_last", 0)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        fail("retention keep_last must be a whole number >= 0", "retention")
    archive = raw.get("archive", True)
    if not isinstance(archive, bool):
        fail("retention archive must be true or false", "retention")
    return Retention(**out, keep_last=keep, archive=archive)


@dataclass(frozen=True)
class Config:
    timezone: str | None = None
    default_timeout: float = DEFAULT_TIMEOUT
    reflector: str | None = None
    trusted_group: str | None = None
    agents: dict[str, AgentSpec] = field(
        default_factory=lambda: {"default": AgentSpec("default", use="mock")})
    poll_interval: float = DEFAULT_POLL_INTERVAL
    retention: Retention = field(default_factory=Retention)
    hooks: tuple[HookSpec, ...] = ()
    refused_hooks: tuple[BadFile, ...] = ()
    capacity: Capacity = field(default_factory=Capacity)
    reflection_window: int = reflections.WINDOW  # entries a plan file keeps (reflections.py)


def load(path: Path) -> Config:
    try:
        raw = fs.read(path, "config").raw
    except FileNotFoundError:
        return Config()
    return parse(path, decode(path, raw))


def parse(path: Path, text: str) -> Config:
    """The config a text would be (`path` names it in messages); BadFile when refused."""
    if not text.strip():
        return Config()
    data = markdown.load_mapping(path, text)
    fail = FileFault(path, lambda key: markdown.line_of(data, key))

    unknown = set(map(str, data)) - {"timezone", "defaults", "reflector", "agents",
                                     "poll_interval", "trusted_group", "capacity",
                                     "retention", "hooks"}
    if unknown:
        fail(f"unknown keys {sorted(unknown)}", sorted(unknown)[0],
             "use timezone, defaults, reflector, agents, poll_interval, trusted_group, "
             "capacity, retention, hooks")
    capacity = capacity_rules.parse(data.get("capacity"), fail)
    poll = _duration(fail, data.get("poll_interval"), DEFAULT_POLL_INTERVAL, "poll_interval",
                     "poll_interval")
    group = data.get("trusted_group")
    if group is not None and (not isinstance(group, str) or not group.strip()):
        fail("trusted_group must be the name of a group, like modulatio", "trusted_group")
    tz = data.get("timezone")
    if tz is not None and not isinstance(tz, str):
        fail("timezone must be an IANA name like Europe/Berlin", "timezone")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        fail("defaults must be a mapping", "defaults")
    timeout = _duration(fail, defaults.get("timeout"), DEFAULT_TIMEOUT, "defaults.timeout",
                        "defaults")
    window = defaults.get("reflection_window", reflections.WINDOW)
    if isinstance(window, bool) or not isinstance(window, int) or not 2 <= window <= 100_000:
        fail(f"defaults.reflection_window {window!r} is not a whole number from 2 to 100000",
             "defaults", "the reflection entries a plan file keeps; the default is "
             f"{reflections.WINDOW}")
    reflector = data.get("reflector")
    if reflector is not None and not isinstance(reflector, str):
        fail("reflector must be a command string", "reflector")
    if reflector is not None and "\0" in reflector:
        fail("reflector holds a NUL character, which no command can hold", "reflector")
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
        run, use = spec.get("run"), spec.get("use")
        if run is not None and not (isinstance(run, str) or (
                isinstance(run, list) and run and all(isinstance(a, str) for a in run))):
            fail(f"agent {name!r}: run must be a command string or a list of arguments", "agents")
        if run is not None and any("\0" in a for a in ([run] if isinstance(run, str) else run)):
            fail(f"agent {name!r}: run holds a NUL character, which no command can hold",
                 "agents")
        if use is not None and not names.is_valid(use):
            fail(f"agent {name!r}: use must name another agent", "agents")
        options = {str(k): v for k, v in spec.items() if k not in ("run", "use")}
        agents[name] = AgentSpec(name, run=tuple(run) if isinstance(run, list) else run,
                                 use=use, options=options)
    hooks, refused = parse_hooks(data.get("hooks"), markdown.line_of)
    return Config(timezone=tz, default_timeout=timeout, reflector=reflector, agents=agents,
                  poll_interval=poll, trusted_group=group, capacity=capacity,
                  retention=_retention(fail, data.get("retention")), hooks=tuple(hooks),
                  refused_hooks=tuple(BadFile(path, r.reason, r.line, r.hint) for r in refused),
                  reflection_window=window)


def sets_capacity(path: Path) -> bool:
    """Whether the config file (perhaps one that does not parse) has a top-level
    `capacity:` line: a cheap look, for a config refused before any was good."""
    try:
        raw = fs.read(path, "config").raw
    except OSError:
        return False
    return any(line.startswith(b"capacity:") for line in raw.splitlines())

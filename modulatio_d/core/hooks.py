"""Hooks: the pure rules (declared shape, matching, backoff, signature).

A hook is declared in `.modulatio/config.yaml` under `hooks:`, a mapping of names
to entries (docs/hooks.md):

    hooks:
      notify:
        events: [plan_failed, "step_*"]      # exact names or globs (* and ?)
        filter: {project: SALES, plan: "SALES-*", severity: warning}
        run: "python3 tools/notify.py"       # the event JSON on stdin; or:
        url: https://example.com/hook        # POST, signed with the secret
        secret_file: /etc/modulatio/hook.secret   # or secret_env: NAME
        timeout: 10s                         # per delivery (default 10 s)
        retry: {attempts: 8, delay: 1s, max_delay: 5m}

Each entry is checked on its own: a bad one is refused whole (a `Refused` with
its line and what to do) and the others stand. Reading the secret file and the
environment is the store's and the deliverer's job (store/hooks.py): here only
the shape is checked. Nothing in this module touches a file, a clock or the
environment: jitter comes in as a number. The signature (HMAC) is the
deliverer's (daemon/hook_delivery.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from modulatio_d.core import names
from modulatio_d.core.checks import parse_duration, show

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_ATTEMPTS = 8
DEFAULT_DELAY_S = 1.0
DEFAULT_MAX_DELAY_S = 300.0
MAX_ATTEMPTS = 100
SEVERITIES = ("info", "warning", "error")
SIGNATURE_HEADER = "X-Modulatio-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-Modulatio-Event"
# The high-level events people subscribe to (store/events.py writes them beside the
# low-level lines they summarise) and their severity for `filter: {severity: ...}`.
SEVERITY_OF = {
    "plan_failed": "error", "plan_crashed": "error", "hook_dead_letter": "error",
    "plan_paused": "warning", "ticket_opened": "warning", "budget_warning": "warning",
    "daemon_stale": "warning", "file_refused": "warning", "hook_refused": "warning",
    "lock_lost": "warning",
    "cron_missed": "warning", "orphan_step": "warning",
}
_KEYS = {"events", "filter", "run", "url", "secret_file", "secret_env", "timeout", "retry"}
_FILTER_KEYS = {"project", "plan", "severity"}
_RETRY_KEYS = {"attempts", "delay", "max_delay"}


@dataclass(frozen=True)
class HookSpec:
    name: str
    events: tuple[str, ...]
    run: str | tuple[str, ...] | None = None
    url: str | None = None
    secret_file: str | None = None
    secret_env: str | None = None
    projects: tuple[str, ...] = ()
    plans: tuple[str, ...] = ()
    severity: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    attempts: int = DEFAULT_ATTEMPTS
    delay: float = DEFAULT_DELAY_S
    max_delay: float = DEFAULT_MAX_DELAY_S
    line: int | None = None

    @property
    def action(self) -> str:
        return f"run {self.run}" if self.run is not None else f"POST {self.url}"


@dataclass(frozen=True)
class Refused:
    """A hook entry refused whole: its name, the line where it goes wrong, why."""

    name: str
    line: int | None
    reason: str
    hint: str = ""


class _Bad(Exception):
    def __init__(self, reason: str, key: str | None = None, hint: str = ""):
        super().__init__(reason)
        self.reason, self.key, self.hint = reason, key, hint


def parse_hooks(raw: object, line_of: Callable[[object, str], int | None],
                ) -> tuple[list[HookSpec], list[Refused]]:
    """The hooks of the config's `hooks:` value, and the entries refused.

    `line_of(mapping, key)` is the line of `key` in a loaded mapping (None when
    unknown): the loader's line numbers, passed in so this stays pure.
    """
    if raw is None:
        return [], []
    if not isinstance(raw, dict):
        return [], [Refused("hooks", line_of(raw, ""), "hooks must be a mapping of hook "
                            "names to entries", "see docs/hooks.md")]
    specs, refused = [], []
    for name, entry in raw.items():
        try:
            specs.append(_parse_one(str(name), entry, line_of(raw, name), line_of))
        except _Bad as e:
            line = (line_of(entry, e.key) if e.key and isinstance(entry, dict) else None) \
                or line_of(raw, name)
            refused.append(Refused(str(name), line, f"hook {str(name)!r}: {e.reason}", e.hint))
    return specs, refused


def _parse_one(name: str, entry: object, line: int | None,
               line_of: Callable[[object, str], int | None]) -> HookSpec:
    if not names.is_valid(name):
        raise _Bad("the name is not valid", None, "use letters, digits, '-' and '_'")
    if not isinstance(entry, dict):
        raise _Bad("the entry must be a mapping with events and run or url")
    unknown = sorted(set(map(str, entry)) - _KEYS)
    if unknown:
        raise _Bad(f"unknown keys {unknown}", unknown[0], "use " + ", ".join(sorted(_KEYS)))
    events = entry.get("events")
    if isinstance(events, str):
        events = [events]
    if not (isinstance(events, list) and events
            and all(isinstance(e, str) and e.strip() for e in events)):
        raise _Bad("events must be a list of event names or globs like step_*", "events")
    if ("run" in entry) == ("url" in entry):
        raise _Bad("needs exactly one of run (a command) or url (a webhook)",
                   "run" if "run" in entry else "url" if "url" in entry else None)
    run, url = entry.get("run"), entry.get("url")
    if "run" in entry and not (isinstance(run, str) and run.strip() or (
            isinstance(run, list) and run and all(isinstance(a, str) for a in run))):
        raise _Bad("run must be a command string or a list of arguments", "run")
    if run is not None and any("\0" in a for a in ([run] if isinstance(run, str) else run)):
        raise _Bad("run holds a NUL character, which no command can hold", "run")
    if "url" in entry and not (isinstance(url, str)
                               and url.startswith(("http://", "https://"))
                               and len(url) > 8 and not any(c.isspace() for c in url)):
        raise _Bad(f"url {show(url)} is not an http:// or https:// address", "url")
    secret_file, secret_env = entry.get("secret_file"), entry.get("secret_env")
    if secret_file is not None and not (isinstance(secret_file, str)
                                        and secret_file.startswith("/")):
        raise _Bad("secret_file must be an absolute path outside the vault", "secret_file")
    if secret_env is not None and not (isinstance(secret_env, str) and secret_env.strip()
                                       and "=" not in secret_env and "\0" not in secret_env):
        raise _Bad("secret_env must name an environment variable", "secret_env")
    if secret_file is not None and secret_env is not None:
        raise _Bad("give secret_file or secret_env, not both", "secret_env")
    if url is not None and secret_file is None and secret_env is None:
        raise _Bad("a webhook needs a secret to sign with: secret_file or secret_env", "url",
                   "never write the secret in the vault")
    if run is not None and (secret_file is not None or secret_env is not None):
        raise _Bad("a secret signs webhooks only; a command hook takes none",
                   "secret_file" if secret_file is not None else "secret_env")
    projects, plans, severity = _filter(entry.get("filter"))
    timeout = _duration(entry, "timeout", DEFAULT_TIMEOUT_S)
    retry = entry.get("retry") or {}
    if not isinstance(retry, dict):
        raise _Bad("retry must be a mapping: {attempts: 8, delay: 1s, max_delay: 5m}", "retry")
    bad = sorted(set(map(str, retry)) - _RETRY_KEYS)
    if bad:
        raise _Bad(f"retry: unknown keys {bad}", "retry", "use attempts, delay, max_delay")
    attempts = retry.get("attempts", DEFAULT_ATTEMPTS)
    if isinstance(attempts, bool) or not isinstance(attempts, int) \
            or not 1 <= attempts <= MAX_ATTEMPTS:
        raise _Bad(f"retry.attempts must be a whole number from 1 to {MAX_ATTEMPTS}", "retry")
    delay = _duration(retry, "delay", DEFAULT_DELAY_S, "retry.")
    max_delay = _duration(retry, "max_delay", DEFAULT_MAX_DELAY_S, "retry.")
    if max_delay < delay:
        raise _Bad("retry.max_delay is shorter than retry.delay", "retry")
    return HookSpec(name, tuple(e.strip() for e in events),
                    run=tuple(run) if isinstance(run, list) else run, url=url,
                    secret_file=secret_file, secret_env=secret_env, projects=projects,
                    plans=plans, severity=severity, timeout=timeout, attempts=attempts,
                    delay=delay, max_delay=max_delay, line=line)


def _duration(entry: dict, key: str, default: float, prefix: str = "") -> float:
    if entry.get(key) is None:
        return default
    try:
        return parse_duration(entry[key])
    except ValueError as e:
        raise _Bad(f"{prefix}{key}: {e}", key if not prefix else "retry") from None


def _strings(value: object, what: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not (isinstance(values, list) and values and all(isinstance(v, str) for v in values)):
        raise _Bad(f"filter.{what} must be a name or a list of names", "filter")
    return tuple(values)


def _filter(raw: object) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    if raw is None:
        return (), (), None
    if not isinstance(raw, dict):
        raise _Bad("filter must be a mapping: {project: ..., plan: ..., severity: ...}",
                   "filter")
    bad = sorted(set(map(str, raw)) - _FILTER_KEYS)
    if bad:
        raise _Bad(f"filter: unknown keys {bad}", "filter", "use project, plan, severity")
    projects = _strings(raw["project"], "project") if "project" in raw else ()
    plans = _strings(raw["plan"], "plan") if "plan" in raw else ()
    severity = raw.get("severity")
    if severity is not None and severity not in SEVERITIES:
        raise _Bad(f"filter.severity {show(severity)} is unknown", "filter",
                   "use " + ", ".join(SEVERITIES))
    return projects, plans, severity


def severity_of(event: dict) -> str:
    return SEVERITY_OF.get(str(event.get("event")), "info")


def matches(spec: HookSpec, event: dict) -> bool:
    """Whether `event` (a line of events.jsonl) is one `spec` wants."""
    kind = str(event.get("event", ""))
    if not any(glob_match(pattern, kind) for pattern in spec.events):
        return False
    if spec.projects and event.get("project") not in spec.projects:
        return False
    if spec.plans and not any(glob_match(p, str(event.get("plan", "")))
                              for p in spec.plans):
        return False
    if spec.severity is not None and (SEVERITIES.index(severity_of(event))
                                      < SEVERITIES.index(spec.severity)):
        return False
    return True


def glob_match(pattern: str, text: str) -> bool:
    """`*` any run of characters, `?` one; everything else literal (no `[...]` sets)."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, text, re.DOTALL) is not None


def backoff(spec: HookSpec, failures: int, jitter: float) -> float:
    """Seconds to wait after the `failures`-th failed delivery of one event: delay doubled
    each time, capped at max_delay, times `jitter` (a number in [0.5, 1): "equal jitter",
    so the deliverers of a hook that fails everywhere do not knock in step)."""
    return min(spec.max_delay, spec.delay * 2 ** max(0, failures - 1)) * jitter


"""Trigger entries: reading and checking them, their state, and the kickoffs they make.

Files:
    <PROJECT>/triggers/<id>.md          the entry (people's keys only)
    <PROJECT>/triggers/<id>.lock        its lock (flock), never deleted
    <PROJECT>/triggers/<id>.state.json  the watch state, written only under the lock
    <PROJECT>/plans/<id>-<NNNNNN>.md    the kickoff of the NNNNNN-th batch of a watch
    <PROJECT>/plans/<id>-W<hash>.md     the kickoff of one webhook delivery

An entry is a cron entry whose time is an event (docs/triggers.md): the same
`objective`, `steps` or `template`, `approve`, `enabled`, checked the same way
(store/cron_entries.py), and one kind:
- `watch: [PATH-OR-GLOB, ...]` with `debounce`, `capacity` (default 1024),
  `overflow` (drop-oldest or drop-newest) and `poll` (how often it is looked at);
- `webhook: true`: kickoffs come from deliveries (`trigger fire`), one per
  delivery id.
Every kickoff id is a function of what it stands for (the batch number, the
delivery id) and is created with O_EXCL, so "the file exists" means "made
already", by anyone.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from modulatio_d.core import checks, markdown, names
from modulatio_d.core.errors import BadFile, FileFault
from modulatio_d.core.markdown import Document
from modulatio_d.store import atomic, fs
from modulatio_d.store.cron_entries import _bool, _parse_steps, _time, template_steps
from modulatio_d.store.vault import Vault

KEYS = ("id", "objective", "watch", "debounce", "capacity", "overflow", "poll", "webhook",
        "secret_file", "secret_env",
        "steps", "template", "enabled", "approve", "priority", "created_at")
"""Every key an entry may have (besides people's own, which start with `x-` or `x_`)."""
DEFAULT_CAPACITY = 1024
MAX_CAPACITY = 100_000
MAX_WATCHED = 50_000
"""Files one watch keeps signatures of; more are not looked at (told once)."""
DEFAULT_DEBOUNCE_S = 1.0
DEFAULT_POLL_S = 1.0
MAX_PAYLOAD = checks.MAX_TEXT_BYTES
"""A webhook payload is handed to the steps in a variable: at most what one may hold."""
MAX_ID_LEN = 200 - len("-W0123456789abcdef")
KICKOFF_PRIORITY = 50


class Overflow(enum.StrEnum):
    """Which changed path a full batch gives up."""

    DROP_OLDEST = "drop-oldest"
    DROP_NEWEST = "drop-newest"


@dataclass(frozen=True)
class Trigger:
    path: Path
    project: str
    id: str
    objective: str
    watch: tuple[str, ...]
    webhook: bool
    debounce: float
    capacity: int
    overflow: Overflow
    poll: float
    steps: tuple[str | tuple[str, ...], ...]
    template: str | None
    enabled: bool
    approve: bool
    priority: int
    body: str
    secret_file: str | None = None
    """Where the HTTP endpoint's signing secret is (outside the vault); or"""
    secret_env: str | None = None
    """the variable of `modulatio serve`'s environment holding it."""

    @property
    def kind(self) -> str:
        return "webhook" if self.webhook else "watch"


def read_trigger(vault: Vault, path: Path) -> Trigger:
    """The entry at `path`, checked completely (its template plan too); raises BadFile."""
    _, text = vault.read(path, "cron entry")
    trigger = parse_trigger(markdown.load(path, text), vault.project_of(path))
    if trigger.template is not None:
        template_steps(vault, trigger)
    return trigger


def parse_trigger(doc: Document, project: str) -> Trigger:
    """A Trigger from a loaded document; every problem names the line of its key."""
    data, fail = doc.data, doc.fault()
    for key in map(str, data):
        if key not in KEYS and not key.startswith(("x-", "x_")):
            close = difflib.get_close_matches(key, KEYS, n=1)
            fail(f"unknown key {key!r}", key, f"did you mean {close[0]}?" if close else
                 "use " + ", ".join(KEYS) + "; keys of your own start with x-")
    stem = doc.path.stem
    trigger_id = data.get("id", stem)
    if not isinstance(trigger_id, str) or not names.is_valid(trigger_id) \
            or trigger_id.startswith("-") or len(trigger_id) > MAX_ID_LEN:
        fail(f"id {checks.show(trigger_id)} is not a valid trigger id", "id",
             f"use letters, digits, '_', '-' and '.', at most {MAX_ID_LEN} characters")
    if trigger_id != stem:
        fail(f"id {trigger_id!r} differs from the file name {stem!r}", "id",
             f"set id: {stem} or rename the file to {trigger_id}.md")
    objective = data.get("objective")
    if not isinstance(objective, str) or not objective.strip():
        fail("objective is missing" if objective is None else "objective must be a text",
             "objective" if "objective" in data else None,
             "write what each kickoff is for, e.g. objective: Rebuild the site")
    watch = _watch(doc, fail, data.get("watch"))
    webhook = data.get("webhook", False)
    if not isinstance(webhook, bool):
        fail(f"webhook {checks.show(webhook)} must be true or false", "webhook")
    if bool(watch) == webhook:
        fail("give one of watch: (paths or globs) and webhook: true" if not watch else
             "watch and webhook are both given", "webhook" if webhook else None,
             "a trigger is one kind: make two entries for both")
    if not watch:
        for key in ("debounce", "capacity", "overflow", "poll"):
            if key in data:
                fail(f"{key} belongs to a watch trigger", key, "remove it")
    for key in ("secret_file", "secret_env"):
        value = data.get(key)
        if value is not None and (not webhook or not isinstance(value, str)
                                  or not value.strip() or "\0" in value):
            fail(f"{key} must be a text, on a webhook trigger", key,
                 "name the file (outside the vault) or the variable holding the secret that "
                 "signs deliveries to the HTTP endpoint (docs/triggers.md)")
    if data.get("secret_file") is not None and data.get("secret_env") is not None:
        fail("secret_file and secret_env are both given", "secret_env", "keep one")
    steps = _parse_steps(doc, data.get("steps"), fail)
    template = data.get("template")
    if template is not None and (not isinstance(template, str) or not names.is_valid(template)):
        fail(f"template {checks.show(template)} is not a plan id", "template")
    if steps and template is not None:
        fail("steps and template are both given", "template", "keep one")
    capacity = data.get("capacity", DEFAULT_CAPACITY)
    checks.count(fail, capacity, "capacity", "capacity", low=1, high=MAX_CAPACITY,
                 hint="the most changed paths one batch holds")
    try:
        overflow = Overflow(str(data.get("overflow", Overflow.DROP_OLDEST.value)))
    except ValueError:
        fail(f"overflow {checks.show(data.get('overflow'))} is not one of "
             + ", ".join(Overflow), "overflow")
    priority = data.get("priority", KICKOFF_PRIORITY)
    checks.count(fail, priority, "priority", "priority", low=-checks.MAX_COUNT)
    _time(data, "created_at", fail)
    return Trigger(
        path=doc.path, project=project, id=trigger_id, objective=objective.strip(),
        watch=watch, webhook=webhook, debounce=_seconds(data, "debounce", DEFAULT_DEBOUNCE_S,
                                                        fail),
        capacity=capacity, overflow=overflow, poll=_seconds(data, "poll", DEFAULT_POLL_S, fail),
        steps=steps, template=template, enabled=_bool(data, "enabled", fail),
        approve=_bool(data, "approve", fail), priority=priority, body=doc.body,
        secret_file=data.get("secret_file"), secret_env=data.get("secret_env"))


def _watch(doc: Document, fail: FileFault, raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        fail("watch must be a path or glob, or a list of them", "watch",
             'e.g. watch: ["inbox/*.csv", /srv/drop]')
    out = []
    for i, item in enumerate(items):
        line = doc.line_of_item(items, i) if items is raw else None
        if not isinstance(item, str) or not item.strip():
            fail(f"watch item {i + 1} ({checks.show(item)}) is not a path or glob", "watch",
                 line=line)
        checks.text(fail, item, f"watch item {i + 1}", "watch", line=line)
        out.append(item.strip())
    return tuple(out)


def _seconds(data: dict, key: str, default: float, fail: FileFault) -> float:
    value = data.get(key)
    if value is None:
        return default
    text = value.strip() if isinstance(value, str) else None
    try:
        if text is not None and text.endswith("ms") and text[:-2].replace(".", "", 1).isdigit():
            return checks.parse_duration(float(text[:-2]) / 1000)
        return checks.parse_duration(value)
    except ValueError as e:
        fail(f"{key}: {e}", key, f"e.g. {key}: 500ms or {key}: 2s")


# --- state of a watch ------------------------------------------------------------

@dataclass
class State:
    """What a watch knows between looks; read and written only under its lock."""

    seq: int = 1
    """The number of the next batch's kickoff."""
    seen: dict[str, list[int]] = field(default_factory=dict)
    """path -> [mtime_ns, size, inode] at the last look."""
    pending: list[str] = field(default_factory=list)
    """Changed paths not yet in a kickoff, oldest first, at most `capacity`."""
    last_change: float | None = None
    """Wall time (Unix seconds) the batch last grew."""
    dropped: int = 0
    """Changed paths the batch gave up (overflow)."""
    primed: bool = False
    """False until the first look: what exists then is the baseline, not a change."""

    def as_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True, separators=(",", ":")).encode()


def state_path(trigger: Trigger) -> Path:
    return trigger.path.with_name(f"{trigger.id}.state.json")


def load_state(trigger: Trigger) -> State:
    """The watch's state; a missing or unreadable one starts over (told by the caller)."""
    try:
        raw = fs.read(state_path(trigger), "trigger state").raw
    except FileNotFoundError:
        return State()
    data = json.loads(raw)
    state = State()
    for key in State.__dataclass_fields__:
        if key in data:
            setattr(state, key, data[key])
    return state


def describe_state(trigger: Trigger) -> dict:
    """The watch's state for `trigger list` and `status` (read, never written)."""
    try:
        state = load_state(trigger)
    except (ValueError, TypeError, BadFile, OSError):
        return {"state": "unreadable"}
    return {"batches": state.seq - 1, "pending": len(state.pending), "dropped": state.dropped,
            "watched_files": len(state.seen), "primed": state.primed}


def save_state(trigger: Trigger, state: State) -> None:
    atomic.replace(state_path(trigger), state.as_json())


# --- kickoffs ----------------------------------------------------------------------

def batch_id(trigger: Trigger, seq: int) -> str:
    return f"{trigger.id}-{seq:06d}"


def delivery_id(trigger: Trigger, delivery: str) -> str:
    """The kickoff id of one webhook delivery: the same delivery id, the same plan."""
    digest = hashlib.sha256(delivery.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{trigger.id}-W{digest[:16]}"


def shape(vault: Vault, trigger: Trigger, env: dict[str, str]) -> dict[str, object]:
    """The kickoff's sub_objectives (and a template's budget, cwd...), each step given `env`."""
    if trigger.steps:
        keys: dict[str, object] = {"sub_objectives": [
            {"run": list(s) if isinstance(s, tuple) else s} for s in trigger.steps]}
    elif trigger.template is not None:
        keys = template_steps(vault, trigger)
    else:
        keys = {"sub_objectives": [{"objective": trigger.objective}]}
    steps = []
    for step in keys["sub_objectives"]:  # type: ignore[union-attr]
        step = {"objective": step} if isinstance(step, str) else dict(step)
        step["env"] = {**(step.get("env") or {}), **env}
        steps.append(step)
    return {**keys, "sub_objectives": steps}


def write_kickoff(vault: Vault, trigger: Trigger, kickoff: str, keys: dict[str, object],
                  body: str, env: dict[str, str], now: datetime) -> bool:
    """Create the kickoff plan with O_EXCL; False when it exists already (made by anyone)."""
    path = vault.plan_path(trigger.project, kickoff)
    if fs.exists(path):
        return False
    made = shape(vault, trigger, env)
    head: dict[str, object] = {
        "id": kickoff, "title": trigger.objective,
        "status": "approved" if trigger.approve else "draft",
        "priority": made.pop("priority", trigger.priority), "trigger": trigger.id,
        **keys, "created_at": now}
    if trigger.approve:
        head["approved_at"] = now
    head.update(made)
    head.update({"current_index": 0, "reflection_log": []})
    text = markdown.set_keys("---\n---\n", head) + "\n" + body
    fs.mkdirs(path.parent)
    try:
        atomic.write_new(path, text.encode())
    except FileExistsError:
        return False
    return True


def check_payload(trigger: Trigger, payload: bytes) -> str:
    """The payload as text for the steps, or BadFile naming what is wrong."""
    if len(payload) > MAX_PAYLOAD:
        raise BadFile(trigger.path, f"a payload of {len(payload)} bytes is more than the "
                      f"{MAX_PAYLOAD} a step's variable may hold",
                      hint="send a reference (a URL, a path) instead of the data")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadFile(trigger.path, "the payload is not UTF-8 text",
                      hint="send JSON or text") from None
    if "\0" in text:
        raise BadFile(trigger.path, "the payload holds a NUL character")
    return text

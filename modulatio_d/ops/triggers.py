"""What the `trigger` commands do (add, list, remove, enable, disable, fire), without argparse.

Entries are read and checked by store/triggers.py; watch triggers are looked at
by the daemons (daemon/trigger_firing.py). `fire` is the webhook's part: one
delivery (its id and payload) becomes exactly one kickoff, whoever fires it and
however often: the kickoff id is a function of the delivery id, created with
O_EXCL. The HTTP endpoint that receives deliveries calls `fire_webhook` too.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from pathlib import Path

from modulatio_d.core import markdown, names
from modulatio_d.core.errors import BadFile, UsageError
from modulatio_d.store import atomic, fs
from modulatio_d.store import triggers as store
from modulatio_d.store.lock import FileLock, lock_path
from modulatio_d.store.triggers import Trigger
from modulatio_d.store.vault import Vault, create_numbered, decode, next_number


def rows(vault: Vault, project: str | None = None) -> list[dict]:
    """Every trigger (of one project, or all) as a plain row, for `trigger list` and status."""
    out = []
    for p in [project] if project else vault.projects():
        for item in sorted(vault.files(p, "triggers"), key=lambda e: e.name):
            path = Path(item.path)
            try:
                t = store.read_trigger(vault, path)
            except FileNotFoundError:
                continue
            except BadFile as e:
                out.append({"id": path.stem, "project": p, "valid": False, "error": str(e),
                            "path": str(path), "_error": e})
                continue
            row = {"id": t.id, "project": p, "valid": True, "kind": t.kind,
                   "enabled": t.enabled, "objective": t.objective, "watch": list(t.watch),
                   "path": str(path)}
            if not t.webhook:
                row.update(debounce_s=t.debounce, capacity=t.capacity,
                           overflow=t.overflow.value, **store.describe_state(t))
            out.append(row)
    return out


def summary(row: dict) -> str:
    """What a valid trigger row (`rows`) watches and where its batches stand, in words:
    one text for `trigger list` and `status`."""
    if row["kind"] == "webhook":
        return "webhook"
    what = f"watch {', '.join(row['watch'])} (debounce {row['debounce_s']:g}s)"
    if "batches" in row:
        what += f"; {row['batches']} batches fired, {row['pending']} changed paths pending"
        if row["dropped"]:
            what += f", {row['dropped']} dropped (overflow)"
    return what


def find(vault: Vault, trigger_id: str) -> Trigger:
    _, path = vault.find("triggers", trigger_id)
    return store.read_trigger(vault, path)


def add(vault: Vault, project: str, objective: str, now: datetime, watch: list[str],
        webhook: bool, debounce: str | None = None, capacity: int | None = None,
        overflow: str | None = None, steps: list[str] | None = None,
        template: str | None = None, approve: bool = True) -> Trigger:
    """Create `<PROJECT>/triggers/<PROJECT>-T-<NNN>.md`, checked as the daemons will."""
    names.check("project code", project)
    if not objective.strip():
        raise UsageError("the objective is empty: say what each kickoff is for")
    if bool(watch) == webhook:
        raise UsageError("give --watch (repeatable) or --webhook")
    if steps and template:
        raise UsageError("give --step or --template, not both")
    keys: dict[str, object] = {"objective": objective.strip()}
    if watch:
        keys["watch"] = list(watch)
        for key, value in (("debounce", debounce), ("capacity", capacity),
                           ("overflow", overflow)):
            if value is not None:
                keys[key] = value
    else:
        if debounce or capacity or overflow:
            raise UsageError("--debounce, --capacity and --overflow go with --watch")
        keys["webhook"] = True
    if steps:
        keys["steps"] = list(steps)
    if template:
        keys["template"] = template
    keys.update({"enabled": True, "approve": approve, "created_at": now})
    folder = vault.project_dir(project) / "triggers"

    def text_for(trigger_id: str) -> str:
        text = markdown.set_keys("---\n---\n", {"id": trigger_id, **keys})
        path = folder / f"{trigger_id}.md"
        try:
            store.parse_trigger(markdown.load(path, text), project)
        except BadFile as e:  # a bad option: refused before any file is made
            raise UsageError(e.reason + (f" ({e.hint})" if e.hint else "")) from None
        return text

    prefix = f"{project}-T-"
    number = next_number(prefix, (folder, vault.plans_dir(project)))
    _, path = create_numbered(folder, prefix, 3, number, text_for)
    return store.read_trigger(vault, path)


def set_enabled(vault: Vault, trigger_id: str, enabled: bool) -> tuple[Trigger, bool]:
    """Rewrite only the `enabled` line; (trigger, whether the file changed)."""
    trigger = find(vault, trigger_id)
    if trigger.enabled is enabled:
        return trigger, False
    path = trigger.path

    def apply(raw: bytes) -> bytes:
        text = decode(path, raw)
        store.parse_trigger(markdown.load(path, text), trigger.project)
        return markdown.set_keys(text, {"enabled": enabled}, path).encode()

    atomic.rewrite(path, apply, vault.read(path)[0], kind="cron entry")
    return store.read_trigger(vault, path), True


def remove(vault: Vault, trigger_id: str, wait_s: float = 5.0) -> Path:
    """Delete the entry and its state under its lock; the lock file and kickoffs stay."""
    _, path = vault.find("triggers", trigger_id)
    lock = FileLock(lock_path(path))
    if not lock.acquire(time.monotonic() + wait_s):
        raise UsageError(f"trigger {trigger_id} stays locked by a daemon; try again")
    with lock:
        fs.unlink(path)
        fs.unlink(path.with_name(f"{path.stem}.state.json"), missing_ok=True)
        atomic.fsync_dir(path.parent)
    return path


def fire_webhook(vault: Vault, trigger_id: str, payload: bytes, delivery: str | None,
                 now: datetime, events) -> tuple[str, bool]:
    """One delivery -> one kickoff: (kickoff id, whether this call made it).

    Without a delivery id, the payload's sha256 stands for it: the same payload
    sent twice is one delivery.
    """
    trigger = find(vault, trigger_id)
    if not trigger.webhook:
        raise UsageError(f"trigger {trigger_id} is a watch trigger: only a webhook trigger "
                         "is fired by a delivery")
    if not trigger.enabled:
        raise UsageError(f"trigger {trigger_id} is disabled: enable it first "
                         f"(modulatio trigger enable {trigger_id})")
    text = store.check_payload(trigger, payload)
    if delivery is None:
        delivery = "sha256:" + hashlib.sha256(payload).hexdigest()
    if not delivery.strip() or len(delivery) > 1000 or "\0" in delivery:
        raise UsageError("--delivery-id must be a non-empty text of at most 1000 characters")
    kickoff = store.delivery_id(trigger, delivery)
    env = {"MODULATIO_TRIGGER": trigger.id, "MODULATIO_DELIVERY_ID": delivery,
           "MODULATIO_TRIGGER_PAYLOAD": text}
    fence = "~~~~" if "```" in text else "```"
    body = (trigger.body.rstrip() + "\n\n" if trigger.body.strip() else "") + \
        f"## Delivery {delivery}\n\n{fence}\n{text.rstrip()}\n{fence}\n"
    made = store.write_kickoff(vault, trigger, kickoff, {"delivery_id": delivery}, body, env,
                               now)
    if made:
        events("trigger_fired", project=trigger.project, trigger=trigger.id, plan=kickoff,
               delivery_id=delivery)
    return kickoff, made

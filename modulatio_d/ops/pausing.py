"""`modulatio pause`, `resume` and `drain`: the operator's hold on the whole vault.

A pause is a line in `.modulatio/pause.yaml` (store/pause.py), which every
daemon of every host looks at each tick, at each step boundary and while a
step runs (daemon/admission.py): nothing new is claimed or fired there, and
each running plan stops at its next step boundary, resumable (`now`: its
running step is stopped as SIGTERM would, to run again on resume).

`running(vault, project)` is what still runs: the executing plans of the scope
whose lock someone holds (a daemon between steps or mid-step, a step's child
of a daemon that died, a `plan` command writing it: all hold it), found by a
flock probe like `status` does. `drain` pauses, then polls it until nothing
runs or its timeout passes; exact across hosts because flock is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from modulatio_d.core import peek
from modulatio_d.store import fs, pause
from modulatio_d.store.lock import is_held, lock_path
from modulatio_d.store.vault import Vault

DRAIN_POLL_S = 0.2


def pause_scope(vault: Vault, project: str | None, reason: str, now: bool,
                at: datetime, environ: Mapping[str, str]) -> pause.State:
    return pause.change(vault.meta, project,
                        pause.Pause(pause.who(environ), at, reason or "", now))


def resume_scope(vault: Vault, project: str | None) -> tuple[pause.State, bool]:
    """Resume; the state after, and whether the scope was paused before."""
    before = pause.load(pause.path_of(vault.meta))
    was = before.vault is not None if project is None else project in before.projects
    return pause.change(vault.meta, project, None), was


def running(vault: Vault, project: str | None) -> list[tuple[str, str]]:
    """(project, plan id) of each executing plan of the scope whose lock is held."""
    found = []
    for code in [project] if project else vault.projects():
        for entry in vault.files(code, "plans"):
            if _runs(Path(entry.path)):
                found.append((code, Path(entry.path).stem))
    return found


def _runs(path: Path) -> bool:
    try:
        head = fs.read(path, "plan").raw[:65536].decode("utf-8", "replace")
        return peek.peek_status(head) == "executing" and is_held(lock_path(path))
    except OSError:
        return False


def wait_drained(vault: Vault, project: str | None, timeout: float | None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> list[tuple[str, str]]:
    """Poll until nothing of the scope runs ([]), or the timeout passes (what runs).

    The whole scope is read once, then only the plans found running, and the whole
    scope again before saying "drained" (a claim the pause met half way, say)."""
    deadline = None if timeout is None else clock() + timeout
    busy = running(vault, project)
    while True:
        if not busy:
            busy = running(vault, project)
            if not busy:
                return []
        if deadline is not None and clock() >= deadline:
            return busy
        sleep(DRAIN_POLL_S)
        busy = [(code, plan) for code, plan in busy
                if _runs(vault.plan_path(code, plan))]

"""`modulatio kickoff PLAN`: claim one plan and run it now, in the foreground.

The same claim as a daemon's (daemon/claim.py: flock on the plan's .lock, the
compare-and-swap under it, a fencing token one higher), the same runner
(daemon/runner.py), so a kickoff is a daemon that serves one plan once:
- a plan whose lock is held (a daemon runs it) is not run: exit 1, naming the
  holder the lock file records;
- a plan that is neither `approved` nor `executing` is not run: exit 1, saying
  what to do (approve it, resume it);
- while it runs, the command writes a heartbeat like a daemon's (`ps` lists it;
  a daemon of this host that finds the plan's lock free treats it as it treats
  any daemon's), and the steps' output files are followed and printed to the
  terminal as they grow (ops/logs.py, in a second thread);
- the operator's pause and the capacity hold as for a daemon (daemon/admission.py):
  a paused plan or one whose limit is full is not run (exit 1, saying why); the
  slots are held for the run; a pause made meanwhile stops it at a step boundary;
- Ctrl-C (SIGINT) or SIGTERM stops the running step as a daemon's SIGTERM
  does: the plan stays `executing` at that step with `in_flight`, and the next
  daemon (or kickoff) resumes it; exit 130. A second Ctrl-C kills the step.
The exit code: 0 completed, 1 failed, paused, aborted or not run, 130 stopped.

`--dry-run` claims nothing: for each step from `current_index`, the command,
folder and environment its executor would launch (the MODULATIO_* variables
with the next token and attempt 1; the rest of the environment is the caller's).
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import TextIO

from modulatio_d import __version__
from modulatio_d.core.errors import ModulatioError
from modulatio_d.core.plan import PlanStatus
from modulatio_d.core.times import utcnow
from modulatio_d.store import config as config_mod
from modulatio_d.store import trust
from modulatio_d.store.plan_file import read_plan
from modulatio_d.store.vault import Vault

RUNNABLE = (PlanStatus.APPROVED, PlanStatus.EXECUTING)


class NotRun(ModulatioError):
    """The plan was not run (held, or not in a status that runs): exit 1."""


def _plan(vault: Vault, plan_id: str):
    project, path = vault.find("plans", plan_id)
    return project, path, read_plan(vault, path).plan


def _not_runnable(plan) -> str:
    what = {PlanStatus.DRAFT: f"approve it first: `modulatio plan approve {plan.id}`",
            PlanStatus.PAUSED: f"resume it first: `modulatio plan resume {plan.id}`"}
    return (f"plan {plan.id} is {plan.status.value}, not approved or executing: "
            + what.get(plan.status, "it has ended; `modulatio plan retry` runs it again"))


# --- dry run ------------------------------------------------------------------------------

def dry_run(vault: Vault, plan_id: str, environ: dict[str, str]) -> dict:
    from modulatio_d.daemon.attempt import step_files
    from modulatio_d.daemon.executors import StepContext, launch
    from modulatio_d.daemon.sdnotify import NOTIFY_ENV_VARS

    project, path, plan = _plan(vault, plan_id)
    config = config_mod.load(vault.config_path)
    base = {k: v for k, v in environ.items()
            if k not in NOTIFY_ENV_VARS and k != trust.ALLOW_ROOT_ENV}
    claim = plan.claim if isinstance(plan.claim, dict) else {}
    token = int(claim.get("token") or 0) + 1
    steps = []
    for step in plan.sub_objectives[plan.current_index:]:
        _, usage = step_files(path.with_suffix(".runs"), step.index, 1)
        ctx = StepContext(vault.root, project, plan, step, 1, token, usage, config, base)
        row: dict = {"step": step.index + 1, "title": step.title}
        try:
            how = launch(ctx)
        except ModulatioError as e:
            row["error"] = str(e)
        else:
            row.update(argv=how.argv, command=shlex.join(how.argv), cwd=str(how.cwd),
                       env={k: v for k, v in how.env.items() if base.get(k) != v})
        steps.append(row)
    return {"plan": plan.id, "project": project, "status": plan.status.value,
            "runnable": plan.status in RUNNABLE,
            "note": None if plan.status in RUNNABLE else _not_runnable(plan),
            "from_step": plan.current_index + 1, "total": plan.total, "steps": steps}


def dry_run_text(shown: dict) -> list[str]:
    lines = [f"plan {shown['plan']} ({shown['status']}): would run steps "
             f"{shown['from_step']}..{shown['total']} in this order (nothing is claimed)"]
    if shown["note"]:
        lines.append(f"note: {shown['note']}")
    for s in shown["steps"]:
        lines.append(f"step {s['step']}: {s['title']}")
        if "error" in s:
            lines.append(f"  cannot run: {s['error']}")
            continue
        lines.append(f"  command: {s['command']}")
        lines.append(f"  cwd: {s['cwd']}")
        for k, v in sorted(s["env"].items()):
            lines.append(f"  env: {k}={v}")
    return lines


# --- the run ------------------------------------------------------------------------------

def run(vault: Vault, plan_id: str, environ: dict[str, str], out: TextIO,
        tell: Callable[[str], None]) -> int:
    """Claim and run (see above); `out` gets the steps' output, `tell` the progress lines."""
    from modulatio_d.daemon.claim import Claimed, Claimer, Missed
    from modulatio_d.daemon.scan import Candidate
    from modulatio_d.daemon.services import Stop
    from modulatio_d.daemon.story import Story
    from modulatio_d.daemon.wake import Waker
    from modulatio_d.store.events import EventLog
    from modulatio_d.store.lock import holder, lock_path

    project, path, plan = _plan(vault, plan_id)
    if plan.status not in RUNNABLE:
        raise NotRun(_not_runnable(plan))
    events = Story(EventLog(vault.events_path, utcnow))
    checks = trust.Checks(vault.root, events, vault, time.monotonic)
    config = config_mod.load(vault.config_path)
    checks.use(trust.Policy.build(vault.root, config.trusted_group,
                                  config_path=vault.config_path), config.trusted_group)
    stop, waker = Stop(), Waker()
    admission, slots = _admitted(vault, events, Candidate((-plan.priority,), path, project,
                                                          plan.status), config)
    claimer = Claimer(vault, events, utcnow, socket.gethostname(), os.getpid(), checks)
    try:
        claimed = claimer.claim(Candidate((), path, project, plan.status))
    except BaseException:
        slots.release_quietly()
        raise
    if not isinstance(claimed, Claimed):
        slots.release_quietly()
    if claimed is Missed.LOST:
        who = holder(lock_path(path))
        by = (f" by {who.get('host')} pid {who.get('pid')}" if who.get("pid") else "")
        raise NotRun(f"plan {plan_id} is held{by}: a daemon (or another kickoff) runs it; "
                     f"not run (follow it with `modulatio logs {plan_id} --follow`)")
    if not isinstance(claimed, Claimed):
        raise NotRun(f"plan {plan_id} could not be claimed ({claimed.value}): see the "
                     f"message above, or `modulatio validate`")
    previous = [signal.signal(s, lambda *_: setattr(stop, "requested", stop.requested + 1))
                for s in (signal.SIGINT, signal.SIGTERM)]
    signal.set_wakeup_fd(waker.w, warn_on_full_buffer=False)
    tell(f"claimed {plan_id} (token {claimed.token}); running from step "
         f"{claimed.held.plan.current_index + 1} of {claimed.held.plan.total} "
         f"(Ctrl-C stops it, resumable)")
    from modulatio_d.ops import logs

    there = {(i, a) for i, a, _ in logs.attempts(logs.runs_dir(path))}  # earlier runs' logs
    done = threading.Event()
    follower = threading.Thread(target=_stream, args=(vault, plan_id, out, done, there),
                                daemon=True)
    follower.start()
    try:
        _run_claimed(vault, claimed, config, events, stop, waker, environ,
                     {"slots": slots, "halt": lambda: admission.halt(project)})
    finally:
        claimed.release()
        slots.release()
        done.set()
        follower.join(timeout=10)
        signal.set_wakeup_fd(-1)
        for s, old in zip((signal.SIGINT, signal.SIGTERM), previous, strict=True):
            signal.signal(s, old)
    final = read_plan(vault, path).plan
    if stop.requested and final.status is PlanStatus.EXECUTING:
        tell(f"stopped; {plan_id} stays executing at step {final.current_index + 1} and "
             f"resumes at the next claim")
        return 130
    tell(f"{plan_id} {final.status.value}")
    return 0 if final.status is PlanStatus.COMPLETED else 1


def _admitted(vault: Vault, events, c, config):
    """The pause and the capacity hold for a kickoff as for a daemon (daemon/admission.py):
    refused while its project is paused, stopped at a step boundary by a pause made
    while it runs; the slots of its limits, held for the run."""
    from modulatio_d.daemon.admission import Admission

    admission = Admission(vault, events, socket.gethostname(), os.getpid())
    admission.refresh()
    paused = admission.paused(c.project)
    if paused is not None:
        raise NotRun(f"{'the vault' if admission.watch.state.vault else 'project ' + c.project}"
                     f" is paused ({paused.describe()}): `modulatio resume` first")
    held = admission.take(c, config.capacity)
    if held is None:
        raise NotRun(f"plan {c.path.stem} waits for a slot ({admission.waiting[c.path.stem]} "
                     f"full): `modulatio status` shows the slots in use")
    return admission, held


def _run_claimed(vault, claimed, config, events, stop, waker, environ, admitted) -> None:
    from modulatio_d.daemon.runner import Runner
    from modulatio_d.daemon.sdnotify import NOTIFY_ENV_VARS
    from modulatio_d.daemon.services import Clocks, Services
    from modulatio_d.store.heartbeat import Heartbeat

    beat = Heartbeat(vault.daemons_dir, 30.0, __version__, utcnow())
    last = [0.0]

    def periodic(plan, step) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            beat.beat(utcnow(), plan.id if plan else None, step.index if step else None)

    base_env = {k: v for k, v in environ.items()
                if k not in NOTIFY_ENV_VARS and k != trust.ALLOW_ROOT_ENV}
    svc = Services(config, events, waker, stop, Clocks(utcnow, time.monotonic), periodic,
                   base_env, 30.0, **admitted)
    try:
        periodic(claimed.held.plan, None)
        Runner(claimed.held, claimed.lock, claimed.token, svc).run()
    finally:
        beat.remove()


def _stream(vault: Vault, plan_id: str, out: TextIO, done: threading.Event,
            skip: set[tuple[int, int]]) -> None:
    """The steps' output as it is written, until the run is over and all of it shown."""
    from modulatio_d.ops import logs

    try:
        logs.show(vault, plan_id, None, None, out, follow=True,
                  running=lambda: not done.is_set(), skip=skip)
    except (OSError, ValueError):  # the terminal went away: the run goes on
        pass

"""One attempt of a step: start its child, wait on it, say how it ended.

`run` starts the step's child (child.py) with the plan's lock descriptor
passed on, then `watch` waits on three things at once: the child's exit (its
pidfd), the wake-up pipe (signals, file events) and the clock, waking at
least once per beat interval. What it decides, in this order:
1. the step's timeout passed (monotonic, counted from before the launch):
   TERM the process group, KILL it after a grace: `timeout`;
2. the child exited on its own: its exit status says `ok` or `failed`;
3. a stop was asked (SIGTERM): the child is stopped the same way and the
   attempt is `interrupted` (the plan stays `executing` with `in_flight`);
4. otherwise `between()` runs (heartbeat, lock check, re-read of the plan)
   and says whether to stop the child now and as what: `aborted` (a person
   aborted the plan) or `interrupted` (the plan's lock file was lost). A
   person's pause is not looked at here: the step finishes first.
Whatever the step left running in its process group is killed when it ends.
A step that cannot start (unknown agent, missing folder, an executable that
is not there) is an `error`. The vault's own part of starting it (making the
plan's runs folder, opening the step's log) is not the step's fault: when it
fails (EIO, ENOSPC) `run` raises `NotPrepared` before anything ran, and the
runner tries again with the patience of a plan write (writeback.py) before it
records an `error`. The
scratch usage file an earlier run of the step may have left is removed first;
if that fails (EIO), the step runs all the same and only what is appended
after its current end is counted (`Attempt.usage_from`).

`reflection_entry` builds a reflection_log entry, for every attempt alike
(one that ended here, one found interrupted on resume).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from modulatio_d.core.errors import StepError
from modulatio_d.core.plan import SubObjective
from modulatio_d.core.times import format_time
from modulatio_d.core.verdict import Decision, Outcome
from modulatio_d.daemon.child import Child, describe_status
from modulatio_d.daemon.executors import StepContext, launch
from modulatio_d.daemon.services import Services
from modulatio_d.store import fs, steplogs

log = logging.getLogger("modulatio.runner")
KILL_GRACE_S = 5.0
SUMMARY_CHARS = 200


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    exit: str
    started: datetime
    ended: datetime
    log_path: Path
    summary: str
    usage_from: int = 0
    """Where this attempt's lines start in its scratch usage file (see above)."""

    @property
    def duration_s(self) -> float:
        return round((self.ended - self.started).total_seconds(), 3)


class NotPrepared(OSError):
    """The vault could not give the step its log (nothing was started): try again."""


def step_files(runs_dir: Path, index: int, number: int) -> tuple[Path, Path]:
    """(output log, usage scratch file) of attempt `number` of step `index` (names that
    sort: store/steplogs.py)."""
    log_name, usage_name = steplogs.names(index, number)
    return runs_dir / log_name, runs_dir / usage_name


def reflection_entry(step: SubObjective, number: int, attempt: Attempt,
                     decision: Decision | None, token: object, plan_dir: Path) -> dict:
    """The attempt's reflection_log entry (`decision` None: not decided yet, for a reflector)."""
    return {"index": step.index, "title": step.title, "attempt": number,
            "outcome": attempt.outcome.value, "exit": attempt.exit,
            "started_at": format_time(attempt.started), "ended_at": format_time(attempt.ended),
            "duration_s": attempt.duration_s,
            "decision": decision.value if decision else None,
            "summary": attempt.summary,
            "log": str(attempt.log_path.relative_to(plan_dir)),
            "token": token}


Between = Callable[[], "Outcome | bool | None"]
"""Called at each beat of a running attempt: a truthy answer stops the child (True
is ABORTED, an Outcome is itself)."""


def run(ctx: StepContext, log_path: Path, keep_fds: tuple[int, ...], started: datetime,
        svc: Services, between: Between) -> Attempt:
    """Run attempt `ctx.attempt` of `ctx.step` to its end (see the protocol above)."""
    clock = svc.clocks.wall
    t0 = svc.clocks.monotonic()
    # Step output and usage may hold secrets: never more readable than the plan.
    cap = fs.mode_of(ctx.plan.path)
    try:
        # The plan's .runs/ folder, opened once for the scratch file and the log (made for
        # the plan's first step; a file in its way: mkdirs refuses it, naming it).
        with fs.Folder(log_path, create=True,
                       cap=None if cap is None else fs.folder_cap(cap)) as runs:
            usage_from = _forget_earlier_usage(ctx.usage_file, runs)
            log_fd = fs.open_regular(log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT,
                                     cap=cap, folder=runs)  # read: its tail (_summary)
    except fs.Refused as e:  # a person's file in the way: no waiting makes it go
        return Attempt(Outcome.ERROR, "not started", started, clock(), log_path, str(e))
    except OSError as e:
        raise NotPrepared(f"cannot open the step's log {log_path}: {e}") from e
    try:
        return _started(ctx, log_path, log_fd, keep_fds, started, svc, between, t0,
                        usage_from, cap)
    finally:
        fs.close(log_fd)  # kept while the step runs: its size and tail read through it


def _started(ctx: StepContext, log_path: Path, log_fd: int, keep_fds: tuple[int, ...],
             started: datetime, svc: Services, between: Between, t0: float,
             usage_from: int, cap: int | None) -> Attempt:
    clock = svc.clocks.wall
    try:
        spec = launch(ctx)
        _write_header(log_fd, ctx, started, spec.argv, spec.cwd)
        child = Child(spec, log_path, (subprocess.DEVNULL, log_fd, subprocess.STDOUT),
                      keep_fds=keep_fds, monotonic=svc.clocks.monotonic)
    except (StepError, OSError) as e:
        try:
            fs.append(log_path, f"modulatio: could not start the step: {e}\n".encode(),
                      cap=cap, folders=False)
        except OSError:
            pass  # no log to write to: the reflection_log entry carries the reason
        return Attempt(Outcome.ERROR, "not started", started, clock(), log_path, str(e))
    timeout = ctx.step.timeout or ctx.config.default_timeout
    most = ctx.config.retention.max_log_bytes

    def beat() -> Outcome | bool | None:
        _trim(log_path, most, log_fd)
        return between()

    try:
        outcome = watch(child, t0 + timeout, svc, beat)
        code = child.wait()
        child.kill_group(signal.SIGKILL)  # what the step left running in its group goes with it
    except BaseException:
        child.kill_group(signal.SIGKILL)  # never leave a step running unwatched
        child.wait()
        raise
    finally:
        child.close()
    _trim(log_path, most, log_fd)
    if outcome is None:
        outcome = Outcome.OK if code == 0 else Outcome.FAILED
    exit_text = describe_status(code)
    if outcome is Outcome.TIMEOUT:
        exit_text = f"timed out after {timeout:g}s ({exit_text})"
    return Attempt(outcome, exit_text, started, clock(), log_path, _summary(log_fd),
                   usage_from)


def _write_header(fd: int, ctx: StepContext, started: datetime, argv: list[str],
                  cwd: Path) -> None:
    data = steplogs.header(ctx.plan.id, ctx.step.index, ctx.step.title, ctx.attempt, started,
                           argv, cwd)
    while data:
        data = data[os.write(fd, data):]


def _trim(log_path: Path, cap: int, fd: int) -> None:
    """The log's size cap (store/steplogs.py); a failure to trim is told, never fatal.
    `fd`: the log as opened for the step: its size looked at without a walk."""
    try:
        if cap <= 0 or os.fstat(fd).st_size <= cap:
            return
        cut = steplogs.trim(log_path, cap)
    except OSError as e:
        log.warning("cannot cap the step log %s: %s", log_path, e)
        return
    if cut:
        log.info("step log %s over %d bytes: %d bytes cut from its middle", log_path, cap, cut)


def _forget_earlier_usage(scratch: Path, runs: fs.Folder) -> int:
    """Remove the scratch usage file an earlier run of this step left (before a person
    rewound current_index: counted then, it must not count again). If it cannot be
    removed, the offset from which this attempt's lines count: a bookkeeping hiccup
    is no reason not to run the step. `runs`: its folder, open."""
    try:
        fs.unlink(scratch, missing_ok=True, folder=runs)
        return 0
    except OSError as e:
        try:
            size = fs.stat_of(scratch).st_size
        except OSError:
            size = 0
        log.warning("cannot remove %s (%s): the step runs; only lines appended after its "
                    "first %d bytes count", scratch, e, size)
        return size


class Watched(Protocol):
    """What `watch` needs of a Child."""

    def poll(self) -> int | None: ...
    def wait_fd(self) -> int | None: ...
    def stop(self, grace: float, hurry: Callable[[], bool]) -> int: ...


def watch(child: Watched, deadline: float, svc: Services,
          between: Between) -> Outcome | None:
    """Wait until the child exits (None) or is stopped (why); `deadline` is monotonic."""
    while child.poll() is None:
        left = deadline - svc.clocks.monotonic()
        if left <= 0:
            child.stop(KILL_GRACE_S, svc.hurry)
            return Outcome.TIMEOUT
        fd = child.wait_fd()
        svc.waker.wait(min(left, svc.beat_interval()), (fd,) if fd is not None else ())
        if child.poll() is not None:
            break
        if svc.stop.requested or svc.halt() == "now":
            child.stop(KILL_GRACE_S, svc.hurry)
            return Outcome.INTERRUPTED
        why = between()
        if why:
            child.stop(KILL_GRACE_S, svc.hurry)
            return why if isinstance(why, Outcome) else Outcome.ABORTED
    return None


def _summary(fd: int) -> str:
    """The last non-empty line of a step's output (its log, as opened for it), shortened."""
    try:
        size = os.fstat(fd).st_size
        tail = os.pread(fd, 4096, max(0, size - 4096))
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.decode("utf-8", "replace").splitlines()]
    last = next((ln for ln in reversed(lines) if ln), "")
    return last if len(last) <= SUMMARY_CHARS else last[: SUMMARY_CHARS - 1] + "…"

"""A random SIGKILL soak: several daemons over many plans, killed at random moments.

Three daemons share a vault of 20 plans of 3 steps each (steps sleep a seeded 20-250
ms, so kills land inside steps as often as inside the bookkeeping between them).
For the first KILL_PHASE_S seconds a harness SIGKILLs a random daemon at random
moments (a seeded 0.05-0.5 s apart) and starts a new one, as a supervisor would;
then it lets the daemons finish. Meanwhile a thread parses plan files over and over.
Checked (torture_helpers.Checker, plus): every read of a plan parsed, no concurrent
run, every step ran, re-runs <= kills, person-written bytes unchanged, all plans
completed within SOAK_S, no daemon died except those the harness killed, each
plan's reflection_log holds one `ok` entry per step (the config's reflection_window
is 2, so entries move out to <plan-id>.reflection_log.jsonl under the kills too, and
are counted there), no fencing token given twice,
`modulatio validate` exits 0. The seed is printed (TORTURE_SEED overrides it); the
kill schedule is seeded, the machine's timing is not: what is asserted does not
depend on it.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time

import pytest
from torture_helpers import (
    CLI,
    Checker,
    Daemon,
    NotAPlan,
    TVault,
    base_env,
    kill_tagged,
    new_tag,
    note,
    parse_plan_text,
    read_regular,
    run,
    whole_log,
)

pytestmark = pytest.mark.timeout(150)
SEED = int(os.environ.get("TORTURE_SEED", "9090"))
PLANS, STEPS, DAEMONS = 20, 3, 3
KILL_PHASE_S = 35.0
SOAK_S = 60.0


class ParsePoller:
    """Parses a random plan file every few ms in a thread; every failure is kept."""

    def __init__(self, tv: TVault, seed: int):
        self.tv, self.rng = tv, random.Random(seed)
        self.reads, self.errors = 0, []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        ids = sorted(self.tv.plans_spec)
        while not self.done.wait(0.01):
            path = self.tv.plan_path(self.rng.choice(ids))
            try:
                parse_plan_text(read_regular(path).decode())
                self.reads += 1
            except (OSError, UnicodeDecodeError, NotAPlan) as e:
                self.errors.append(f"{path.name}: {type(e).__name__}: {e}")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


_COMPLETED = re.compile(rb"(?m)^status:[ \t]*completed\b")


def all_completed(tv: TVault) -> bool:
    """Every plan says `status: completed` (a cheap look; the checker parses them all)."""
    for plan_id in tv.plans_spec:
        try:
            if not _COMPLETED.search(read_regular(tv.plan_path(plan_id))):
                return False
        except OSError:
            return False
    return True


def test_random_sigkill_soak(tmp_path):
    print(f"torture soak: seed={SEED} (TORTURE_SEED overrides), {DAEMONS} daemons, "
          f"{PLANS} plans x {STEPS} steps")
    rng = random.Random(SEED)
    tag = new_tag()
    env = base_env(tag)
    tv = TVault.create(tmp_path, env, window=2)
    for k in range(PLANS):
        tv.write_plan(f"T-{k:02d}", [rng.uniform(0.02, 0.25) for _ in range(STEPS)],
                      priority=rng.randint(0, 3), crlf=k % 5 == 0)
    started: list[Daemon] = []
    problems: list[str] = []

    def start() -> Daemon:
        d = Daemon(tv.root, ["--tick-seconds", "0.5", "--log-level", "info"],
                   tmp_path / f"daemon-{len(started):03d}.log", env)
        started.append(d)
        return d

    def supervise(live: list[Daemon]) -> list[Daemon]:
        """Restart every daemon that died on its own, and report it."""
        out = []
        for d in live:
            if not d.alive():
                problems.append(f"daemon {d.pid} died on its own (exit {d.proc.returncode}):"
                                f"\n{d.log_tail()}")
                d = start()
            out.append(d)
        return out

    kills = 0
    t0 = time.monotonic()
    try:
        with ParsePoller(tv, SEED) as poller:
            live = [start() for _ in range(DAEMONS)]
            while time.monotonic() - t0 < KILL_PHASE_S and not all_completed(tv):
                # A random moment: the kill schedule itself, not a wait for a condition.
                time.sleep(rng.uniform(0.05, 0.5))
                live = supervise(live)
                victim = rng.randrange(len(live))
                live[victim].kill()
                kills += 1
                live[victim] = start()
            while time.monotonic() - t0 < SOAK_S and not all_completed(tv):
                live = supervise(live)
                time.sleep(0.05)
            live = supervise(live)
            elapsed = time.monotonic() - t0
            for d in live:
                # SIGTERM before its handlers are in (a daemon started a moment ago, still
                # importing) kills it by the default action: wait for its first event.
                started_at = time.monotonic()
                while d.alive() and time.monotonic() - started_at < 15 and not any(
                        e.get("event") == "daemon_started" and e.get("pid") == d.pid
                        for e in tv.events()):
                    time.sleep(0.02)
                code = d.stop(10)
                if code != 0:
                    problems.append(f"daemon {d.pid} did not stop cleanly on SIGTERM "
                                    f"(exit {code}):\n{d.log_tail()}")
        print(f"torture soak: {kills} SIGKILLs, {len(started)} daemons started, "
              f"{elapsed:.1f}s, {poller.reads} parses by the poller")
        problems += [f"a plan read failed to parse: {e}" for e in poller.errors[:5]]
        if not all_completed(tv):
            problems.append(f"not all plans completed within {SOAK_S}s")
        problems += Checker(tv, kills).violations()
        moved = 0
        for plan_id in sorted(tv.plans_spec):
            data = parse_plan_text(read_regular(tv.plan_path(plan_id)).decode())
            moved += (data.get("reflection_archived") or {}).get("entries", 0)
            # the entries moved beside the plan too (a window of 2: they move every step)
            oks = sorted(e.get("index") for e in whole_log(tv.plan_path(plan_id), data)
                         if isinstance(e, dict) and e.get("outcome") == "ok")
            if oks != list(range(STEPS)):
                problems.append(f"{plan_id}: reflection_log `ok` entries for steps {oks}, "
                                f"wanted one each for {list(range(STEPS))}")
        if not moved:
            problems.append("no reflection entry moved out of a plan file: the window of 2 "
                            "was not exercised")
        tokens: dict[str, list[int]] = {}
        for e in tv.events():
            if e.get("event") in ("claimed", "orphan_recovered"):
                tokens.setdefault(str(e.get("plan")), []).append(e.get("token"))
        reused = {p: t for p, t in tokens.items() if len(set(t)) != len(t)}
        if reused:
            problems.append(f"fencing tokens given twice: {reused}")
        done = run([*CLI, "validate", "--vault", str(tv.root)], env, 60)
        if done.code != 0 or "Traceback" in done.err:
            problems.append(f"validate: {done.describe()}\n{done.out[-2000:]}")
        assert not problems, note(problems)
    finally:
        for d in started:
            if d.alive():
                d.kill()
        kill_tagged(tag)

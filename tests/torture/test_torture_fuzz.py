"""A bulk mutation fuzz: spoiled plans, cron entries, tickets and config (and odd files
named like them) beside good plans. The daemon must stay alive, never hang, and
complete the good plans; `validate`, `status`, `plan list` and `metrics` must end
with an exit code (not hang, not die by a signal) and never print a traceback.

Each case is one family of spoilers from mutations.py (seeded: the seed is printed,
TORTURE_SEED overrides it). Cases of plans, cron entries, tickets and odd configs run
`daemon --once` (bounded: a hang is killed and reported) beside the four commands;
the config case runs one long-lived daemon while bad configs replace each other
under it; the odd-files case runs one long-lived daemon, the commands meanwhile, and
stops it with SIGTERM. A long-lived daemon that dies or hangs is reported and started
again once, as a supervisor (or systemd's watchdog) would. Every process has its address space capped
(MEMORY_LIMIT), so a reader that reads /dev/zero or a sparse file whole fails with
MemoryError instead of eating the machine. Besides the invariants of
torture_helpers.Checker (over the good plans), each case checks:
- every spoiled file a command refused (named in `validate`'s output) is byte for
  byte as written (a refused file is never changed);
- nothing is silently ignored: a spoiled plan whose YAML says `approved` or
  `executing` (as our own parser reads it) ran, or was refused (named by `validate`),
  or was recorded as crashed (`plan_crashed` in events.jsonl); likewise an open
  ticket whose YAML holds a decision.
Cases that fail because of a defect issue 9 lists are marked xfail(strict=True) with
the defect: when it is fixed the case passes, strict xfail fails, and the mark goes.
"""

from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mutations as mu
import pytest
from torture_helpers import (
    CLI,
    PROJECT,
    Checker,
    Daemon,
    Done,
    NotAPlan,
    TVault,
    base_env,
    kill_tagged,
    limit_memory,
    new_tag,
    note,
    parse_plan_text,
    read_regular,
    run,
)

pytestmark = pytest.mark.timeout(120)
SEED = int(os.environ.get("TORTURE_SEED", "9091"))
MEMORY_LIMIT = 1 << 30
DAEMON_TIMEOUT_S = 25.0  # a daemon --once over a case's vault, when nothing hangs: ~2 s
COMMAND_TIMEOUT_S = 12.0
GOOD_WAIT_S = 12.0
RESTARTS = 1
COMMANDS = (("validate", "--json"), ("status",), ("plan", "list"), ("metrics",))


def xfail(defect: str):
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"issue 9 defect {defect}")


# --- the cases: (id, builder, xfail) ---------------------------------------------------


def _rename(kind: str):
    def rename(text: str, stem: str) -> str:
        return text.replace(f"id: {kind}", f"id: {stem}", 1)
    return rename


def garbled_plans(rng: random.Random) -> list[mu.Mutant]:
    base = mu.render(mu.plan_fields("M"))
    ren = _rename("M")
    return (mu.byte_flips(rng, base, 12, "MF", "plans", ren)
            + mu.truncations(rng, base, 6, "MT", "plans", ren))


def defect1_reflection_log(rng) -> list[mu.Mutant]:
    return [mu.plan_value_mutant("D1-moved", ("reflection_archived",), "{entries: abc}"),
            mu.plan_value_mutant("D1-movednan", ("reflection_archived",),
                                 "{entries: 1, duration_s: .nan}"),
            mu.plan_value_mutant("D1-nofile", ("reflection_archived",),
                                 "{entries: 5, duration_s: 1}"),
            mu.plan_value_mutant("D1-ints", ("reflection_log",), "[1, 2]"),
            mu.plan_value_mutant("D1-null", ("reflection_log",), "[null]"),
            mu.Mutant("plans", "D1-abc", "budget wall_clock with reflection_log "
                      "[{duration_s: abc}]", mu.writes(mu.render(mu.with_value(
                          mu.plan_fields("D1-abc"), ("reflection_log",),
                          "[{duration_s: abc}]"))))]


def defect1_popen(rng) -> list[mu.Mutant]:
    return [mu.plan_value_mutant("D1-argvnul", ("sub_objectives", 0, "run"),
                                 '["echo", "a\\0b"]'),
            mu.plan_value_mutant("D1-shnul", ("sub_objectives", 0, "run"), '"echo a\\0b"'),
            mu.plan_value_mutant("D1-envnul", ("sub_objectives", 0, "env"), '{A: "x\\0y"}'),
            mu.plan_value_mutant("D1-enveq", ("sub_objectives", 0, "env"), '{"A=B": x}')]


def defect1_nan(rng) -> list[mu.Mutant]:
    # The step must outlive the daemon's first look at the clock, or the NaN is never used.
    fields = mu.with_value(mu.plan_fields("D1-nan"), ("sub_objectives", 0, "run"), '"sleep 1"')
    fields = mu.with_value(fields, ("sub_objectives", 0, "timeout"), ".nan")
    return [mu.Mutant("plans", "D1-nan", "sub_objectives.0.timeout: .nan (a 1 s step)",
                      mu.writes(mu.render(fields)))]


def defect1_overflow(rng) -> list[mu.Mutant]:
    return [mu.plan_value_mutant("D1-token", ("claim",), "{token: 1e400}"),
            mu.plan_value_mutant("D1-year1", ("execution_started_at",),
                                 "0001-01-01T00:00:00+01:00")]


def defect1_nesting(rng) -> list[mu.Mutant]:
    return [mu.plan_value_mutant("D1-deeplist", ("sub_objectives",), mu.DEEP_LIST),
            mu.plan_value_mutant("D1-deepmap", ("x_notes",), mu.DEEP_MAP)]


def defect1_complex_key(rng) -> list[mu.Mutant]:
    return [m for m in mu.whole_document(mu.plan_fields, "plans", "D1", "status", "approved")
            if m.stem == "D1-complexkey"]


def defect1_block_status(rng) -> list[mu.Mutant]:
    return [m for m in mu.whole_document(mu.plan_fields, "plans", "D1", "status", "approved")
            if m.stem == "D1-blockscalar"]


def typewrong_plans(rng: random.Random) -> list[mu.Mutant]:
    """Every key a daemon reads once, with a seeded value from the catalogue, and every
    value of the catalogue once, at a seeded key; and the whole-document spoilers."""
    paths, out = mu.plan_paths(), []
    for k, path in enumerate(paths):
        out.append(mu.plan_value_mutant(f"TK-{k:02d}", path, rng.choice(mu.VALUES)))
    for k, value in enumerate(mu.VALUES):
        out.append(mu.plan_value_mutant(f"TV-{k:02d}", rng.choice(paths), value))
    out += [m for m in mu.whole_document(mu.plan_fields, "plans", "TW", "status", "approved")
            if m.stem not in ("TW-complexkey", "TW-blockscalar")]
    return out


def _values_mutants(fields_of, paths, folder: str, prefix: str, rng) -> list[mu.Mutant]:
    """Every key path once with a seeded value of the catalogue, and every value of the
    catalogue once at a seeded key path."""
    pairs = [(path, rng.choice(mu.VALUES)) for path in paths]
    pairs += [(rng.choice(paths), value) for value in mu.VALUES]
    out = []
    for k, (path, value) in enumerate(pairs):
        stem = f"{prefix}-{k:02d}"
        fields = mu.with_value(fields_of(stem), path, value)
        label = value if len(value) < 40 else value[:20] + f"...({len(value)} chars)"
        out.append(mu.Mutant(folder, stem, f"{'.'.join(map(str, path))}: {label}",
                             mu.writes(mu.render(fields))))
    return out


def garbled_cron(rng: random.Random) -> list[mu.Mutant]:
    base = mu.render(mu.cron_fields("C"))
    return (mu.byte_flips(rng, base, 8, "CF", "cron", _rename("C"))
            + mu.truncations(rng, base, 5, "CT", "cron", _rename("C")))


def typewrong_cron(rng: random.Random) -> list[mu.Mutant]:
    paths = [(k,) for k in mu.cron_fields("x")]
    return (_values_mutants(mu.cron_fields, paths, "cron", "CV", rng)
            + mu.whole_document(mu.cron_fields, "cron", "CW", "schedule", '"0 0 1 1 *"'))


def ticket_fields(stem: str) -> dict:
    return mu.ticket_fields(stem, f"Q-{stem}")


def _rename_ticket(text: str, stem: str) -> str:
    return text.replace("id: K", f"id: {stem}", 1).replace("Q-K", f"Q-{stem}")


def garbled_tickets(rng: random.Random) -> list[mu.Mutant]:
    base = mu.render(ticket_fields("K"))
    return (mu.byte_flips(rng, base, 8, "KF", "tickets", _rename_ticket)
            + mu.truncations(rng, base, 5, "KT", "tickets", _rename_ticket))


def typewrong_tickets(rng: random.Random) -> list[mu.Mutant]:
    paths = [(k,) for k in ticket_fields("x")] + [("checkpoint", "current_index"),
                                                   ("checkpoint", "rev")]
    return (_values_mutants(ticket_fields, paths, "tickets", "KV", rng)
            + mu.whole_document(ticket_fields, "tickets", "KW", "decision", "approve"))


def odd_files(rng: random.Random, outside: Path) -> list[mu.Mutant]:
    out = []
    for folder, stem in (("plans", "OP"), ("cron", "OC"), ("tickets", "OK")):
        out += mu.odd_files(folder, stem, outside / folder)
    # A FIFO config (its /dev/zero, directory and sparse kinds are cases of their own)
    # and the usage file linked to /dev/zero.
    out.append(mu.Mutant("config", "config", "config.yaml a FIFO", lambda p: os.mkfifo(p)))
    out.append(mu.Mutant("bookkeeping", f"{PROJECT}/plans/U-1.usage.jsonl",
                         "a usage file linked to /dev/zero", lambda p: os.symlink("/dev/zero", p)))
    out.append(mu.Mutant("plans", "U-1", "a good plan whose usage file is /dev/zero",
                         mu.writes(mu.render(mu.plan_fields("U-1")))))
    out.append(mu.Mutant("bookkeeping", f".modulatio/state/{PROJECT}/R-1.json",
                         "a state record that is a FIFO", lambda p: os.mkfifo(p)))
    out.append(mu.Mutant("plans", "R-1", "a plan whose state record is a FIFO",
                         mu.writes(mu.render(mu.plan_fields("R-1")))))
    out.append(mu.Mutant("bookkeeping", ".modulatio/daemons/elsewhere.1.json",
                         "a heartbeat that is a FIFO", lambda p: os.mkfifo(p)))
    return out


def _config(name: str, make) -> list[mu.Mutant]:
    return [mu.Mutant("config", "config", name, make)]


def config_directory(rng) -> list[mu.Mutant]:
    return _config("config.yaml a directory", lambda p: p.mkdir())


def config_dev_zero(rng) -> list[mu.Mutant]:
    return _config("config.yaml a symlink to /dev/zero", lambda p: os.symlink("/dev/zero", p))


def config_sparse(rng) -> list[mu.Mutant]:
    def sparse(path: Path) -> None:
        with open(path, "wb") as f:
            f.write(b"timezone: UTC\n")
            f.truncate(2 << 30)
    return _config("config.yaml a sparse 2 GiB file", sparse)


def config_sequence(rng: random.Random) -> list[mu.Mutant]:
    base = mu.render(mu.config_fields(), front=False)
    paths = [("timezone",), ("defaults",), ("defaults", "timeout"), ("agents",),
             ("agents", "default"), ("reflector",)]
    out = []
    for k in range(4):
        data = bytearray(base.encode())
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= rng.randint(1, 255)
        out.append(mu.Mutant("config", "config", f"bytes flipped ({k})", mu.writes(bytes(data))))
    for _ in range(2):
        cut = rng.randrange(1, len(base))
        out.append(mu.Mutant("config", "config", f"truncated to {cut}", mu.writes(base[:cut])))
    for path in paths:
        value = rng.choice(mu.VALUES)
        label = value if len(value) < 40 else value[:20] + "..."
        out.append(mu.Mutant("config", "config", f"{'.'.join(path)}: {label}", mu.writes(
            mu.render(mu.with_value(mu.config_fields(), path, value), front=False))))
    for name, text in (("a complex key", base + "? - a: 1\n: x\n"),
                       ("deep nesting", base + "x: " + mu.DEEP_LIST + "\n"),
                       ("defaults.timeout .nan", base.replace("timeout: 10m", "timeout: .nan")),
                       ("a list", "- 1\n- 2\n"), ("NUL bytes", "timezone: UTC\0\n")):
        out.append(mu.Mutant("config", "config", name, mu.writes(text)))
    return out


CONTENT_CASES = [
    ("plans-garbled", garbled_plans, None),
    ("plans-d1-reflection-log", defect1_reflection_log, None),
    ("plans-d1-popen", defect1_popen, None),
    ("plans-d1-nan-timeout", defect1_nan, None),
    ("plans-d1-overflow", defect1_overflow, None),
    ("plans-d1-deep-nesting", defect1_nesting, None),
    ("plans-d1-complex-key", defect1_complex_key, None),
    ("plans-d1-block-scalar-status", defect1_block_status, None),
    # A plan whose cwd folder is missing is a meaning error validate names but the daemon
    # runs (the step is an `error`, the plan pauses with a ticket): only files validate
    # marks `refused` must stay unchanged.
    ("plans-type-wrong", typewrong_plans, None),
    ("cron-garbled", garbled_cron, None),
    ("cron-type-wrong", typewrong_cron, None),
    ("tickets-garbled", garbled_tickets, None),
    ("tickets-type-wrong", typewrong_tickets, None),
    ("config-directory", config_directory, None),  # defect 2, fixed (store/fs/)
    ("config-dev-zero", config_dev_zero, None),  # defect 3, fixed (store/fs/)
    ("config-sparse", config_sparse, None),  # defect 3, fixed (store/fs/)
]


# --- the harness ------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    tag = new_tag()
    env = base_env(tag)
    tv = TVault.create(tmp_path_factory.mktemp("fuzz-template"), env)
    for plan_id in ("G-1", "G-2"):
        tv.write_plan(plan_id, [0.0, 0.0], priority=10)
    yield tv, env, tag
    kill_tagged(tag)


def place(tv: TVault, m: mu.Mutant) -> Path:
    if m.folder == "config":
        return tv.root / ".modulatio" / "config.yaml"
    if m.folder == "bookkeeping":
        return tv.root / m.stem
    return tv.root / PROJECT / m.folder / f"{m.stem}.md"


def backdate(path: Path) -> None:
    """Old enough to be judged (a file changed in the last 2 s may be half-written)."""
    t = time.time() - 3600
    try:
        os.utime(path, (t, t), follow_symlinks=False)
    except OSError:
        pass


def spoiled(tv: TVault, mutants: list[mu.Mutant]) -> frozenset[Path]:
    """The bookkeeping files spoiled on purpose (not the daemon's doing)."""
    return frozenset(place(tv, m) for m in mutants if m.folder == "bookkeeping")


def lay_out(tv: TVault, mutants: list[mu.Mutant]) -> dict[Path, bytes | None]:
    """Write the mutants into the vault; what each regular file holds (None: odd file)."""
    written: dict[Path, bytes | None] = {}
    for m in mutants:
        path = place(tv, m)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        m.write(path)
        if m.folder == "tickets":  # the paused plan the ticket decides about
            plan = tv.plans / f"Q-{m.stem}.md"
            plan.write_text(mu.render(mu.with_value(mu.plan_fields(f"Q-{m.stem}"), ("status",),
                                              "paused")))
            backdate(plan)
        backdate(path)
        st = os.lstat(path)
        regular = not path.is_symlink() and path.is_file() and st.st_size <= 2 << 20
        written[path] = read_regular(path) if regular else None
    return written


def commands(tv: TVault, env: dict[str, str]) -> list[Done]:
    with ThreadPoolExecutor(len(COMMANDS)) as pool:
        return list(pool.map(lambda argv: run(
            [*CLI, *argv, "--vault", str(tv.root)], env, COMMAND_TIMEOUT_S,
            preexec_fn=limit_memory(MEMORY_LIMIT)), COMMANDS))


def command_problems(done: list[Done]) -> list[str]:
    out = []
    for d in done:
        if d.hung or d.code < 0 or "Traceback" in d.err:
            out.append(f"command {d.describe()}")
    return out


def supervised_once(tv: TVault, env: dict[str, str], problems: list[str],
                    restarts: int = 0) -> int:
    """`daemon --once` until it ends cleanly, restarted at most `restarts` times after a
    death (as a supervisor would); every death and hang is a problem. The deaths."""
    deaths = 0
    for attempt in range(restarts + 1):
        d = run([*CLI, "daemon", "--vault", str(tv.root), "--once", "--tick-seconds", "0.2"],
                env, DAEMON_TIMEOUT_S, preexec_fn=limit_memory(MEMORY_LIMIT))
        if d.code == 0 and "Traceback" not in d.err:
            return deaths
        deaths += 1
        problems.append(f"daemon --once (run {attempt + 1}) {d.describe()}")
        if d.hung:
            break
    return deaths


def refused_names(done: list[Done]) -> set[str]:
    """The names of the files `validate --json` says the daemons refuse (never change). A
    problem of meaning (a missing cwd) names a file the daemons run and may change."""
    validate = next(d for d in done if d.argv[len(CLI)] == "validate")
    try:
        problems = json.loads(validate.out)
    except ValueError:
        return set()
    return {Path(p["path"]).name for p in problems if p.get("refused")}


def content_problems(tv: TVault, written: dict[Path, bytes | None], done: list[Done]) -> list[str]:
    """Refused files unchanged; nothing approved, or decided, silently ignored."""
    out = []
    validate = next(d for d in done if d.argv[len(CLI)] == "validate")
    if validate.hung or "Traceback" in validate.err:
        return out  # already a problem; its output cannot be trusted
    said = refused_names(done)
    crashed = {str(e.get("plan")) for e in tv.events() if e.get("event") == "plan_crashed"}
    for path, raw in written.items():
        if raw is None or not path.name.endswith(".md"):
            continue
        named = path.name in said
        if named and read_regular(path) != raw:
            out.append(f"{path.relative_to(tv.root)} was refused but changed")
        if named or path.stem in crashed:
            continue
        try:
            data = parse_plan_text(read_regular(path).decode())
        except (OSError, UnicodeDecodeError, NotAPlan, RecursionError):
            continue
        folder = path.parent.name
        if folder == "plans" and data.get("status") in ("approved", "executing"):
            out.append(f"{path.relative_to(tv.root)} is {data.get('status')!r} to a YAML "
                       f"parser but was neither run nor refused nor reported crashed")
        if folder == "tickets" and data.get("decision") in ("approve", "decline") and \
                data.get("status", "open") == "open":
            out.append(f"{path.relative_to(tv.root)} holds decision "
                       f"{data.get('decision')!r} but was neither applied nor refused")
    return out


def report(case: str, mutants: list[mu.Mutant], problems: list[str]) -> str:
    listing = "\n".join(f"    {m.folder}/{m.stem}: {m.name}" for m in mutants)
    return note(problems) + f"\n{case}: the spoiled files:\n{listing}"


# --- the tests ----------------------------------------------------------------------


def _case_params():
    out = []
    for i, (case, build, defect) in enumerate(CONTENT_CASES):
        marks = [xfail(defect)] if defect else []
        out.append(pytest.param(i, case, build, id=case, marks=marks))
    return out


@pytest.mark.parametrize("index, case, build", _case_params())
def test_spoiled_files_beside_good_plans(template, tmp_path, index, case, build):
    src, env, tag = template
    seed = SEED + index
    print(f"torture fuzz {case}: seed={seed} (TORTURE_SEED={SEED} overrides the base)")
    mutants = build(random.Random(seed))
    tv = src.copy_to(tmp_path / "case")
    written = lay_out(tv, mutants)
    problems: list[str] = []
    try:
        with ThreadPoolExecutor(1) as pool:
            daemon = pool.submit(supervised_once, tv, env, problems)
            done = commands(tv, env)
            deaths = daemon.result()
        problems += command_problems(done)
        problems += Checker(tv, kills=deaths).violations()
        problems += content_problems(tv, written, done)
    finally:
        kill_tagged(tag)
    assert not problems, report(case, mutants, problems)


def swap_in(m: mu.Mutant, path: Path) -> None:
    """Put the mutant at `path` in one rename, as an editor's save does."""
    tmp = path.with_name(f".{path.name}.new")
    m.write(tmp)
    if (path.is_dir() and not path.is_symlink()) or (tmp.is_dir() and not tmp.is_symlink()):
        # rename() swaps a file for a file or a folder for an empty folder only.
        path.rename(path.with_name(f".{path.name}.old-{time.monotonic_ns()}"))
    os.replace(tmp, path)


def heartbeat_tick(tv: TVault, pid: int) -> str | None:
    import json
    for path in (tv.root / ".modulatio" / "daemons").glob(f"*.{pid}.json"):
        try:
            return json.loads(read_regular(path)).get("last_tick")
        except (OSError, ValueError):
            return None
    return None


def good_done(tv: TVault) -> bool:
    return not [v for v in Checker(tv).violations(check_files=False) if "not completed" in v]


def wait_or_die(cond, d: Daemon, timeout: float) -> bool:
    """Poll `cond` until true (True), the daemon dies or the deadline passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        if not d.alive():
            return bool(cond())
        time.sleep(0.02)
    return bool(cond())


def test_bad_configs_replace_each_other_under_a_running_daemon(template, tmp_path):
    """Each bad config in turn replaces the one before (atomically, as an editor saves);
    after each the daemon must tick twice (or be reported dead or hung and restarted);
    then a new good plan arrives and must complete under the last bad config."""
    src, env, tag = template
    seed = SEED + 100
    print(f"torture fuzz config sequence: seed={seed}")
    mutants = config_sequence(random.Random(seed))
    tv = src.copy_to(tmp_path / "case")
    problems: list[str] = []
    started: list[Daemon] = []

    def start() -> Daemon:
        d = Daemon(tv.root, ["--tick-seconds", "0.2"], tmp_path / f"d{len(started)}.log", env,
                   preexec_fn=limit_memory(MEMORY_LIMIT))
        started.append(d)
        return d

    try:
        d = start()
        if not wait_or_die(lambda: good_done(tv), d, GOOD_WAIT_S):
            problems.append(f"good plans not completed before the bad configs:\n{d.log_tail()}")
        config = tv.root / ".modulatio" / "config.yaml"
        for m in mutants:
            swap_in(m, config)
            seen = [heartbeat_tick(tv, d.pid)]

            def ticked(d=d, seen=seen) -> bool:
                now = heartbeat_tick(tv, d.pid)
                if now is not None and now != seen[-1]:
                    seen.append(now)
                return len(seen) > 2

            if not wait_or_die(ticked, d, 5.0):
                how = "died" if not d.alive() else "stopped ticking (hung)"
                problems.append(f"config {m.name!r}: the daemon {how}:\n{d.log_tail()}")
                d.kill()
                d = start()
        spec = tv.write_plan("G-late", [0.0], priority=10)
        del spec
        if not wait_or_die(lambda: good_done(tv), d, GOOD_WAIT_S):
            problems.append(f"a plan approved under the last bad config did not complete:\n"
                            f"{d.log_tail()}")
        code = d.stop(10)
        if code != 0:
            problems.append(f"SIGTERM: the daemon exited {code}:\n{d.log_tail()}")
        problems += command_problems(commands(tv, env))
        problems += Checker(tv, kills=len(started) - 1).violations()
    finally:
        for d in started:
            if d.alive():
                d.kill()
        kill_tagged(tag)
    assert not problems, report("config sequence", mutants, problems)


def test_odd_files_named_like_vault_files(template, tmp_path):
    """FIFOs, directories, symlinks (to /dev/zero, to themselves, to nowhere, out of the
    vault, to a FIFO), a sparse 2 GiB file and a file over 1 MiB, each named like a
    plan, a cron entry and a ticket; config.yaml a FIFO; a usage file linked to
    /dev/zero; a state record and a heartbeat that are FIFOs. A long-lived daemon must
    complete the good plans and stop on SIGTERM; the commands, run meanwhile, must end."""
    src, env, tag = template
    print("torture fuzz odd files (no randomness)")
    tv = src.copy_to(tmp_path / "case")
    mutants = odd_files(random.Random(SEED), tmp_path / "outside")
    lay_out(tv, mutants)
    problems: list[str] = []
    started: list[Daemon] = []

    def start() -> Daemon:
        d = Daemon(tv.root, ["--tick-seconds", "0.2"], tmp_path / f"d{len(started)}.log",
                   env, preexec_fn=limit_memory(MEMORY_LIMIT))
        started.append(d)
        return d

    try:
        with ThreadPoolExecutor(1) as pool:
            done = pool.submit(commands, tv, env)
            d = start()
            for attempt in range(RESTARTS + 1):
                if wait_or_die(lambda: good_done(tv), d, GOOD_WAIT_S):
                    break
                if d.alive():
                    problems.append(f"good plans not completed in {GOOD_WAIT_S}s, the daemon "
                                    f"alive but stuck:\n{d.log_tail()}")
                    break
                problems.append(f"the daemon died (exit {d.proc.returncode}):\n{d.log_tail()}")
                if attempt < RESTARTS:
                    d = start()
            if d.alive():
                code = d.stop(5)
                if code != 0:
                    how = "did not exit" if code is None else f"exited {code}"
                    problems.append(f"SIGTERM: the daemon {how}:\n{d.log_tail()}")
            problems += command_problems(done.result())
        problems += Checker(tv, kills=len(started) - 1,
                            skip=spoiled(tv, mutants)).violations()
    finally:
        for d in started:
            if d.alive():
                d.kill()
        kill_tagged(tag)
    assert not problems, report("odd files", mutants, problems)

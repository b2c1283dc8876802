"""Shared pieces of the torture lane (tests/torture/): real `modulatio` processes on a
real vault, driven only through stable interfaces (the CLI, the files of the vault,
events.jsonl), and one checker of the invariants every torture test asserts.

The invariants (`Checker.violations`), each a line of the failure message:
- every plan file parses (frontmatter closed, YAML a mapping), and so does every
  line of events.jsonl and of the usage files and every record in .modulatio/state/;
- no concurrent run of a plan: each test step takes a sentinel flock per plan with
  LOCK_NB and writes `overlap` to the marks file when a second copy runs at once;
- every step of every good plan ran to its end;
- re-runs at most one per kill (a step's starts beyond its first, summed, never
  exceed the number of daemons killed);
- person-written bytes unchanged: the body, every line of a person's key, every
  column-0 comment and blank line, and the comment after `status:`;
- good plans completed (status completed, current_index past the last step, no
  in_flight);
and the tests add: the daemon alive (or restarted by the harness, as a supervisor
would, and every such death reported).

The test step (STEP_TOOL, run as `python -S step.py '<json>'`) writes
`start|end|overlap PLAN INDEX ATTEMPT PID` lines to a marks file outside the vault
(its own writes must wake no daemon) with one O_APPEND write each.

Every process a test starts carries TORTURE_TAG=<tag> in its environment (steps
inherit it), and `kill_tagged` SIGKILLs whatever still carries it at teardown.
PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML

from modulatio_d.core import plan as plan_model

PY = sys.executable
CLI = [PY, "-m", "modulatio_d"]
PROJECT = "P"
# Keys the daemon writes (docs/plan-file.md, "Keys"), from the package itself so a new one
# is never taken for a person's edit, and approved_digest, which approving commands write;
# `status` is shared: its value is the daemon's, the comment after it the person's.
DAEMON_KEYS = {*plan_model.DAEMON_KEYS, "approved_digest"}

STEP_TOOL = r'''
"""Torture step: python -S step.py '<json options>' (see torture_helpers.py)."""
import fcntl, json, os, sys, time

opts = json.loads(sys.argv[1])
e = os.environ
who = "%s %s %s %d" % (e["MODULATIO_PLAN_ID"], e["MODULATIO_STEP_INDEX"],
                       e["MODULATIO_ATTEMPT"], os.getpid())


def note(what):
    fd = os.open(opts["marker"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, ("%s %s\n" % (what, who)).encode())
    os.close(fd)


# The sentinel: held until this process exits; a second copy of a step of this plan
# running at the same time cannot take it and says so.
g = os.open(opts["guard"], os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.flock(g, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    note("overlap")
note("start")
if opts.get("usage"):
    with open(e["MODULATIO_USAGE_FILE"], "a") as f:
        f.write('{"model": "torture", "input_tokens": 3, "output_tokens": 2}\n')
time.sleep(opts.get("sleep", 0))
note("end")
'''


# --- reading what the fuzz may have spoiled ---------------------------------------

READ_LIMIT = 8 << 20


class NotRegular(OSError):
    pass


def read_regular(path: Path, limit: int = READ_LIMIT) -> bytes:
    """A regular file's bytes (at most `limit`): never a FIFO's open that blocks, never
    /dev/zero read without end (the harness must not have the defects it looks for)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(f"{path} is not a regular file")
        if st.st_size > limit:
            raise NotRegular(f"{path} is {st.st_size} bytes, over {limit}")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)[:limit]
    finally:
        os.close(fd)


# --- processes ----------------------------------------------------------------------


def base_env(tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODULATIO_")}
    env["TORTURE_TAG"] = tag
    # Tests run as root in CI; a daemon that one day refuses root without it still runs.
    env["MODULATIO_ALLOW_ROOT"] = "1"
    return env


def limit_memory(limit_bytes: int):
    """A preexec_fn capping the address space: a reader that reads /dev/zero or an 8 GB
    sparse file whole gets MemoryError instead of eating the machine's memory."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


@dataclass
class Done:
    """A finished (or hung, then killed) command: code None means it hung."""

    argv: list[str]
    code: int | None
    out: str
    err: str
    seconds: float

    @property
    def hung(self) -> bool:
        return self.code is None

    def describe(self) -> str:
        what = "hung (killed)" if self.hung else f"exit {self.code}"
        tail = "\n".join(self.err.splitlines()[-12:])
        return f"`{' '.join(self.argv[2:])}` {what} after {self.seconds:.1f}s; stderr tail:\n{tail}"


def run(argv: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None,
        preexec_fn=None) -> Done:
    """Run a command to its end, or kill its whole process group after `timeout` s."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=cwd, start_new_session=True,
                            preexec_fn=preexec_fn)
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        code = None
    return Done(argv, code, out.decode(errors="replace"), err.decode(errors="replace"),
                time.monotonic() - t0)


class Daemon:
    """A `modulatio daemon` process in its own session, stderr to a log file."""

    def __init__(self, root: Path, args: list[str], log_path: Path, env: dict[str, str],
                 preexec_fn=None):
        self.log_path = log_path
        self.argv = [*CLI, "daemon", "--vault", str(root), *args]
        with open(log_path, "ab") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, env=env,
                                         start_new_session=True, preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        self.killed = False  # by the harness

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the daemon alone (its step dies by its dead man's switch) and reap it."""
        self.killed = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, then wait: its exit code, or None if it did not exit (then SIGKILLed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            return None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def tagged(tag: str) -> list[int]:
    """Pids of live processes whose environment carries TORTURE_TAG=<tag>."""
    needle = b"\0TORTURE_TAG=" + tag.encode() + b"\0"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = b"\0" + f.read()
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and state not in ("Z", "X"):
            found.append(int(name))
    return found


def kill_tagged(tag: str) -> None:
    for _ in range(50):
        pids = tagged(tag)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def new_tag() -> str:
    return uuid.uuid4().hex


# --- the vault ----------------------------------------------------------------------


@dataclass
class PlanSpec:
    """A good plan as a person wrote it: its text is kept to check their bytes later."""

    plan_id: str
    steps: int
    text: str


@dataclass
class TVault:
    """A vault made by `modulatio init`, project P, and the test step beside it.

    `work` (outside the vault) holds the step tool, the marks file and the guards."""

    root: Path
    work: Path
    plans_spec: dict[str, PlanSpec] = field(default_factory=dict)

    @property
    def plans(self) -> Path:
        return self.root / PROJECT / "plans"

    @property
    def marks_path(self) -> Path:
        return self.work / "marks"

    def plan_path(self, plan_id: str) -> Path:
        return self.plans / f"{plan_id}.md"

    @classmethod
    def create(cls, base: Path, env: dict[str, str], window: int | None = None) -> TVault:
        """`window`: the config's defaults.reflection_window (small: entries move out of
        the plan files into <plan-id>.reflection_log.jsonl at nearly every step)."""
        root, work = base / "vault", base / "work"
        done = run([*CLI, "init", str(root)], env, 60)
        assert done.code == 0, done.describe()
        if window is not None:
            config = root / ".modulatio" / "config.yaml"
            old = config.read_text() if config.exists() else ""
            assert "\ndefaults:" not in f"\n{old}", old  # init writes none
            config.write_text(f"{old}\ndefaults:\n  reflection_window: {window}\n")
        (root / PROJECT / "plans").mkdir(parents=True)
        work.mkdir(parents=True)
        (work / "guards").mkdir()
        (work / "step.py").write_text(STEP_TOOL)
        return cls(root, work)

    def copy_to(self, base: Path) -> TVault:
        """The same vault and step in a new folder (marks and guards re-pointed)."""
        new = TVault(base / "vault", base / "work")
        shutil.copytree(self.root, new.root, symlinks=True)
        shutil.copytree(self.work, new.work, symlinks=True)
        for spec in self.plans_spec.values():
            text = spec.text.replace(str(self.work), str(new.work))
            new.plan_path(spec.plan_id).write_bytes(text.encode())
            new.plans_spec[spec.plan_id] = PlanSpec(spec.plan_id, spec.steps, text)
        return new

    def step_argv(self, plan_id: str, sleep: float = 0.0, usage: bool = True) -> list[str]:
        opts = {"marker": str(self.marks_path), "guard": str(self.work / "guards" / plan_id),
                "sleep": round(sleep, 3), "usage": usage}
        return [PY, "-S", str(self.work / "step.py"), json.dumps(opts)]

    def write_plan(self, plan_id: str, sleeps: list[float], priority: int = 10,
                   crlf: bool = False, usage: bool = True) -> PlanSpec:
        """A good approved plan with one step per entry of `sleeps`, written the way a
        person would: comments, a quoted title, a key of their own, a body."""
        lines = [
            f"id: {plan_id}",
            f'title: "Torture plan {plan_id}"   # a person\'s comment',
            "status: approved   # approved by a person",
            f"priority: {priority}",
            "# the steps, a person's",
            "sub_objectives:",
        ]
        for i, s in enumerate(sleeps):
            step = {"title": f"step {i}", "run": self.step_argv(plan_id, s, usage)}
            lines.append("  - " + json.dumps(step))
        lines += ["notes: kept as written   # nobody reads this", "",
                  "# daemon-owned from here down", "current_index: 0", "reflection_log: []"]
        eol = "\r\n" if crlf else "\n"
        text = eol.join(["---", *lines, "---", "The body, a person's own.  ",
                         "", "- a list item", ""])
        path = self.plan_path(plan_id)
        tmp = path.with_name(f".{path.name}.new")
        tmp.write_bytes(text.encode())
        os.replace(tmp, path)
        spec = PlanSpec(plan_id, len(sleeps), text)
        self.plans_spec[plan_id] = spec
        return spec

    def marks(self) -> list[tuple[str, str, int, int, int]]:
        """(what, plan, index, attempt, pid) of every line the test steps wrote."""
        try:
            lines = read_regular(self.marks_path).decode().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            what, plan_id, index, attempt, pid = line.split()
            out.append((what, plan_id, int(index), int(attempt), int(pid)))
        return out

    def events(self) -> list[dict]:
        path = self.root / ".modulatio" / "events.jsonl"
        try:
            lines = read_regular(path).splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "<unparsable line>", "line": line[:200].decode("latin-1")})
        return out


# --- reading plan files without the package's own reader --------------------------


class NotAPlan(Exception):
    pass


def split_frontmatter(text: str) -> tuple[str, str]:
    """(frontmatter YAML, body) of a plan's text; NotAPlan when not closed."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n") != "---":
        raise NotAPlan("no opening ---")
    for i, line in enumerate(lines[1:], 1):
        if line.rstrip("\r\n") in ("---", "..."):
            return "".join(lines[1:i]), "".join(lines[i + 1:])
    raise NotAPlan("frontmatter not closed")


def parse_plan_text(text: str) -> dict:
    """The frontmatter as plain data (ruamel's safe loader); NotAPlan when it is not a
    mapping or not YAML. Independent of modulatio_d's reader on purpose."""
    front, _ = split_frontmatter(text)
    try:
        data = YAML(typ="safe", pure=True).load(front)
    except Exception as e:  # noqa: BLE001 - any failure to parse is the finding
        raise NotAPlan(f"YAML: {type(e).__name__}: {e}") from e
    if not isinstance(data, dict):
        raise NotAPlan(f"frontmatter is a {type(data).__name__}, not a mapping")
    return data


_KEY = re.compile(r"^([A-Za-z_][\w.-]*)[ \t]*:")
_STATUS = re.compile(r"^(status[ \t]*:[ \t]*)(\S+)(.*)$", re.S)


def person_lines(front: str) -> list[str]:
    """The frontmatter's lines a person owns: every line but those of daemon keys
    (the key line and the lines that continue it), with the value of `status:` masked."""
    out: list[str] = []
    in_daemon_key = False
    for line in front.splitlines(keepends=True):
        m = _KEY.match(line)
        if m:
            in_daemon_key = m.group(1) in DAEMON_KEYS
            if in_daemon_key:
                continue
            s = _STATUS.match(line)
            out.append(f"{s.group(1)}<status>{s.group(3)}" if s else line)
            continue
        if line[:1] in (" ", "\t", "-") and in_daemon_key:
            continue  # continues a daemon key's value
        if line[:1] not in (" ", "\t", "-"):
            in_daemon_key = False  # a column-0 comment or blank line: the person's
        out.append(line)
    return out


def whole_log(plan_path: Path, data: dict) -> list:
    """A plan's whole reflection log, read independently of modulatio_d: the first
    `reflection_archived.entries` lines of <plan-id>.reflection_log.jsonl (lines past
    them are a move whose plan write never landed: not entries), then the window."""
    moved = data.get("reflection_archived") or {}
    count = moved.get("entries", 0) if isinstance(moved, dict) else 0
    earlier: list = []
    if count:
        raw = read_regular(plan_path.with_name(plan_path.stem + ".reflection_log.jsonl"))
        earlier = [json.loads(line) for line in raw.split(b"\n")[:count]]
        if len(earlier) != count:
            raise NotAPlan(f"{len(earlier)} moved reflection entries, {count} counted")
    return [*earlier, *(data.get("reflection_log") or [])]


# --- the invariants ----------------------------------------------------------------


def _jsonl_problems(path: Path, rel: str) -> list[str]:
    problems = []
    try:
        data = read_regular(path)
    except OSError as e:
        return [f"{rel}: cannot be read: {e}"]
    for n, line in enumerate(data.splitlines(), 1):
        try:
            json.loads(line)
        except ValueError:
            problems.append(f"{rel}:{n}: not JSON: {line[:120]!r}")
    return problems


def bookkeeping_problems(tv: TVault, skip: frozenset[Path] = frozenset()) -> list[str]:
    """Every line of events.jsonl and the usage files is JSON, every state record too
    (but the files in `skip`: those a test spoiled on purpose)."""
    problems = []
    meta = tv.root / ".modulatio"
    if (meta / "events.jsonl").exists():
        problems += _jsonl_problems(meta / "events.jsonl", ".modulatio/events.jsonl")
    for usage in sorted(set(tv.plans.glob("*.usage.jsonl")) - skip):
        problems += _jsonl_problems(usage, str(usage.relative_to(tv.root)))
    for moved in sorted(set(tv.plans.glob("*.reflection_log.jsonl")) - skip):
        problems += _jsonl_problems(moved, str(moved.relative_to(tv.root)))
    for record in sorted(set((meta / "state").glob("*/*.json")) - skip):
        # a line of JSON a write (store/record_lines.py): every line whole and JSON
        problems += _jsonl_problems(record, str(record.relative_to(tv.root)))
        try:
            if not read_regular(record).endswith(b"\n"):
                problems.append(f"{record.relative_to(tv.root)}: a torn last line")
        except OSError as e:
            problems.append(f"{record.relative_to(tv.root)}: cannot be read: {e}")
    return problems


@dataclass
class Checker:
    """The invariants of the module docstring, over the good plans of `tv`."""

    tv: TVault
    kills: int = 0  # daemons killed (each may cost one re-run)
    skip: frozenset[Path] = frozenset()  # bookkeeping files spoiled on purpose

    def violations(self, check_files: bool = True) -> list[str]:
        tv, out = self.tv, []
        marks = tv.marks()
        overlaps = [m for m in marks if m[0] == "overlap"]
        if overlaps:
            out.append(f"concurrent runs (a second copy of a step ran while another held "
                       f"the plan's sentinel): {overlaps[:5]}")
        reruns = 0
        for spec in tv.plans_spec.values():
            for i in range(spec.steps):
                starts = [m for m in marks if m[0] == "start" and m[1] == spec.plan_id
                          and m[2] == i]
                ends = [m for m in marks if m[0] == "end" and m[1] == spec.plan_id
                        and m[2] == i]
                if not ends:
                    out.append(f"{spec.plan_id} step {i} never ran to its end "
                               f"({len(starts)} starts)")
                reruns += max(0, len(starts) - 1)
        if reruns > self.kills:
            runs = {}
            for m in marks:
                if m[0] == "start":
                    runs[(m[1], m[2])] = runs.get((m[1], m[2]), 0) + 1
            more = {k: v for k, v in runs.items() if v > 1}
            out.append(f"{reruns} re-runs for {self.kills} kill(s): steps run more than "
                       f"once: {more}")
        for spec in tv.plans_spec.values():
            out += self._plan_violations(spec)
        if check_files:
            out += bookkeeping_problems(tv, self.skip)
        return out

    def _plan_violations(self, spec: PlanSpec) -> list[str]:
        path = self.tv.plan_path(spec.plan_id)
        name = f"{PROJECT}/plans/{path.name}"
        try:
            text = read_regular(path).decode()
            data = parse_plan_text(text)
        except (OSError, UnicodeDecodeError, NotAPlan) as e:
            return [f"{name} does not parse: {e}"]
        out = []
        status, index = data.get("status"), data.get("current_index")
        if status != "completed" or index != spec.steps or data.get("in_flight"):
            out.append(f"{name} not completed: status {status!r}, current_index {index!r}, "
                       f"in_flight {data.get('in_flight')!r}, last_error "
                       f"{data.get('last_error')!r}")
        front0, body0 = split_frontmatter(spec.text)
        front1, body1 = split_frontmatter(text)
        if body1 != body0:
            out.append(f"{name}: the body changed: {body0!r} -> {body1!r}")
        lost = _diff(person_lines(front0), person_lines(front1))
        if lost:
            out.append(f"{name}: person-written lines changed: {lost}")
        return out


def _diff(before: list[str], after: list[str]) -> str:
    if before == after:
        return ""
    import difflib
    return " | ".join(line.rstrip("\r\n") for line in difflib.unified_diff(
        before, after, "written", "now", n=0, lineterm="") if line[:1] in "+-")


def note(lines: list[str]) -> str:
    """A failure message: one violation a line."""
    return "\n".join(["invariants violated:", *(f"  - {v}" for v in lines)])

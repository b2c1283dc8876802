"""The mutation catalogue of the fuzz: seeded ways to spoil a plan, a cron entry, a
ticket or the config, and odd files named like them.

Built from issue 9's defect 1 list and generalised: every key a daemon reads (the
person's, its own, and the ones nested in steps, claim, in_flight, budget, env and
reflection_log entries) gets values of the wrong shape from one catalogue (lists
where maps go, maps where lists go, null, booleans, huge and negative numbers, 1e400,
.nan, .inf, NUL bytes, empty and huge strings, impossible dates, tags, aliases, deep
nesting), plus whole-document spoilers (byte flips, truncations, complex keys, block
scalars where a one-word value goes). `Mutant.name` says exactly what was done, so a
failure message names the file and its spoiler.
PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DEEP = 300  # past ruamel's recursion (~220 today); the scanner is quadratic in depth: 5,000 costs 12 s a parse
DEEP_LIST = "[" * DEEP + "]" * DEEP
DEEP_MAP = "{a: " * DEEP + "1" + "}" * DEEP

# Values of the wrong shape, as YAML flow text; one catalogue for every key.
VALUES = [
    "[1, 2]", "[null]", "[]", "[[1], {a: 1}]", "[{duration_s: abc}]",
    "{a: 1}", "{}", "{wall_clock: 1h}", "{token: 1e400}",
    "null", "true", "false",
    "1e400", "-1e400", ".nan", ".inf", "-.inf", "-1", "0",
    "123456789012345678901234567890", "0x7fffffffffffffffffff",
    '"a\\0b"', '"\\0"', '""', '"abc"', '"A=B"', '"\\u202e\\ud7ff"',
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-02-30",
    "!!binary aGVsbG8=", "!!set {a, b}", "!!omap [{a: 1}]", "!!float 1e999",
    "[&x 1, *x]",
    "|-\n  approved",
    DEEP_LIST, DEEP_MAP,
    '"' + "x" * 300_000 + '"',
]


@dataclass(frozen=True)
class Mutant:
    """One spoiled file: `write(path)` makes it at `path` (the name it is stored under)."""

    folder: str  # plans | cron | tickets | config | bookkeeping
    stem: str
    name: str  # what was done, for messages
    write: Callable[[Path], None]


def writes(data: bytes | str) -> Callable[[Path], None]:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data

    def write(path: Path) -> None:
        path.write_bytes(raw)

    return write


# --- base documents ----------------------------------------------------------------


def plan_fields(stem: str) -> dict[str, object]:
    """A good approved plan as ordered (key -> YAML flow text), nested maps as dicts."""
    return {
        "id": stem,
        "title": f'"Mutant {stem}"   # a comment',
        "status": "approved",
        "priority": "50",
        "sub_objectives": [
            {"title": "first", "run": '"exit 0"', "timeout": "30s", "retries": "0",
             "on_failure": "pause", "rerun_after_crash": "true", "env": {"A": '"1"'}},
            {"title": "second", "run": '["sh", "-c", "exit 0"]'},
        ],
        "budget": {"tokens": "1000000", "cost_usd": "100", "wall_clock": "1h"},
        "approved_at": "2026-01-01T00:00:00Z",
        "current_index": "0",
        "reflection_log": "[]",
    }


# Daemon keys a plan carries once it has run; a mutation of them starts from these.
DAEMON_NESTED = {
    "claim": {"host": "elsewhere", "pid": "1", "token": "1",
              "claimed_at": '"2026-01-01T00:00:00Z"'},
    "in_flight": {"index": "0", "attempt": "1", "token": "1",
                  "started_at": '"2026-01-01T00:00:00Z"'},
    "reflection_log": [{"index": "0", "title": "first", "attempt": "1", "outcome": "failed",
                        "exit": "exit 1", "started_at": '"2026-01-01T00:00:00Z"',
                        "ended_at": '"2026-01-01T00:00:01Z"', "duration_s": "1.0",
                        "decision": "retry", "token": "1"}],
}


def cron_fields(stem: str) -> dict[str, object]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": stem, "objective": '"Yearly mutant"', "schedule": '"0 0 1 1 *"',
            "timezone": "UTC", "enabled": "true", "catch_up": "latest", "overlap": "skip",
            "approve": "true", "steps": '["exit 0"]', "created_at": now,
            "last_fired_for": "null"}


def ticket_fields(stem: str, plan_id: str) -> dict[str, object]:
    return {"id": stem, "plan": plan_id, "severity": "warning", "reason": '"a mutant"',
            "created_at": "2026-01-01T00:00:00Z",
            "checkpoint": {"current_index": "0", "rev": "0"},
            "decision": "approve   # a person decided", "status": "open"}


def config_fields() -> dict[str, object]:
    return {"timezone": "UTC", "defaults": {"timeout": "10m"},
            "agents": {"default": "{use: mock}", "writer": "{use: mock, model: w}"}}


def _flow(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


def render(fields: dict[str, object], body: str = "The body.\n", front: bool = True,
           extra: str = "") -> str:
    """The document: one top-level key a line (lists one item a line, maps in flow)."""
    lines = []
    for key, value in fields.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"  - {_flow(v)}" for v in value]
        elif isinstance(value, str) and "\n" in value:
            lines.append(f"{key}: {value}")  # a block scalar: its lines follow
        else:
            lines.append(f"{key}: {_flow(value)}")
    text = "\n".join(lines) + "\n" + extra
    return f"---\n{text}---\n{body}" if front else text


def with_value(fields: dict[str, object], path: tuple, value: str) -> dict[str, object]:
    """A copy of `fields` with the value at `path` (keys and list indexes) replaced."""
    out = copy.deepcopy(fields)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


# --- paths of every key read ------------------------------------------------------


def plan_paths() -> list[tuple]:
    base = plan_fields("x")
    paths = [(k,) for k in base]
    paths += [("sub_objectives", 0, k) for k in base["sub_objectives"][0]]
    paths += [("sub_objectives", 0, "objective"), ("sub_objectives", 0, "agent"),
              ("sub_objectives", 0, "call"), ("sub_objectives", 0, "cwd"),
              ("sub_objectives", 0, "env", "A"), ("sub_objectives", 1),
              ("budget", "tokens"), ("budget", "cost_usd"), ("budget", "wall_clock"),
              ("cwd",), ("reflector",), ("created_at",), ("execution_started_at",),
              ("completed_at",), ("last_error",), ("rev",)]
    for key, nested in DAEMON_NESTED.items():
        paths.append((key,))
        inner = nested[0] if isinstance(nested, list) else nested
        prefix = (key, 0) if isinstance(nested, list) else (key,)
        paths += [(*prefix, k) for k in inner]
    return paths


def _with_nested(fields: dict[str, object], path: tuple) -> dict[str, object]:
    """Give the plan the daemon key the path goes into, with good values, and the
    other keys that make it reachable (an executing plan for claim and in_flight)."""
    key = path[0]
    if key in DAEMON_NESTED:
        fields = dict(fields)
        fields[key] = copy.deepcopy(DAEMON_NESTED[key])
    if key == "in_flight":
        fields["status"] = "executing"
    return fields


def plan_value_mutant(stem: str, path: tuple, value: str) -> Mutant:
    fields = with_value(_with_nested(plan_fields(stem), path), path, value)
    label = value if len(value) < 40 else value[:20] + f"...({len(value)} chars)"
    return Mutant("plans", stem, f"{'.'.join(map(str, path))}: {label}", writes(render(fields)))


# --- generators -------------------------------------------------------------------


def byte_flips(rng: random.Random, base: str, n: int, prefix: str, folder: str,
               rename: Callable[[str, str], str]) -> list[Mutant]:
    out = []
    raw = base.encode()
    end = raw.find(b"\n---", 3) + 4
    for k in range(n):
        stem = f"{prefix}-{k:02d}"
        data = bytearray(rename(base, stem).encode())
        flips = rng.randint(1, 4)
        where = []
        for _ in range(flips):
            i = rng.randrange(min(end, len(data)))
            data[i] ^= rng.randint(1, 255)
            where.append(i)
        out.append(Mutant(folder, stem, f"bytes flipped at {sorted(where)}",
                          writes(bytes(data))))
    return out


def truncations(rng: random.Random, base: str, n: int, prefix: str, folder: str,
                rename: Callable[[str, str], str]) -> list[Mutant]:
    out = []
    for k in range(n):
        stem = f"{prefix}-{k:02d}"
        data = rename(base, stem).encode()
        cut = rng.randrange(1, len(data))
        out.append(Mutant(folder, stem, f"truncated to {cut} bytes", writes(data[:cut])))
    return out


def whole_document(fields_of: Callable[[str], dict], folder: str, prefix: str,
                   one_word_key: str, one_word: str) -> list[Mutant]:
    """Complex keys (the issue: `? ` followed by a block sequence), a block scalar for a
    one-word value, anchors, a flow mapping as the whole frontmatter, a BOM, CRLF."""
    out = []

    def add(suffix: str, name: str, text: str) -> None:
        out.append(Mutant(folder, f"{prefix}-{suffix}", name, writes(text)))

    stem = f"{prefix}-complexkey"
    add("complexkey", "a `? ` complex key that is a block sequence of mappings (TypeError)",
        render(fields_of(stem), extra="? - a: 1\n: x\n"))
    stem = f"{prefix}-complexseq"
    add("complexseq", "a `? ` complex key that is a block sequence",
        render(fields_of(stem), extra="? - a\n  - b\n: x\n"))
    stem = f"{prefix}-complexmap"
    add("complexmap", "a `? ` complex key that is a flow mapping",
        render(fields_of(stem), extra="? {a: 1}\n: x\n"))
    stem = f"{prefix}-nestedcomplex"
    add("nestedcomplex", "a complex key inside a nested mapping",
        render(fields_of(stem), extra="x_n:\n  ? - a: 1\n  : y\n"))
    stem = f"{prefix}-blockscalar"
    add("blockscalar", f"`{one_word_key}: >-` block scalar holding {one_word!r}",
        render(with_value(fields_of(stem), (one_word_key,), f">-\n  {one_word}")))
    stem = f"{prefix}-literal"
    add("literal", f"`{one_word_key}: |` literal block holding {one_word!r}",
        render(with_value(fields_of(stem), (one_word_key,), f"|\n  {one_word}")))
    stem = f"{prefix}-anchor"
    fields = fields_of(stem)
    fields["x-a"] = "&a [1, 2]"
    fields["x-b"] = "*a"
    add("anchor", "an anchor and an alias", render(fields))
    stem = f"{prefix}-flow"
    add("flow", "the whole frontmatter one flow mapping",
        "---\n" + _flow(fields_of(stem)) + "\n---\nBody.\n")
    stem = f"{prefix}-dupkey"
    add("dupkey", f"`{one_word_key}` twice", render(fields_of(stem),
                                                    extra=f"{one_word_key}: {one_word}\n"))
    stem = f"{prefix}-tabs"
    add("tabs", "a tab-indented value", render(fields_of(stem), extra="x_tab:\n\t- 1\n"))
    return out


def odd_files(folder: str, stem: str, outside: Path) -> list[Mutant]:
    """A FIFO, a directory, symlinks (to /dev/zero, a loop, nowhere, outside the vault,
    a FIFO), a sparse 2 GiB file and a regular file just over 1 MiB, named `stem`-*."""

    def fifo(path: Path) -> None:
        os.mkfifo(path)

    def directory(path: Path) -> None:
        path.mkdir()
        (path / "inside.md").write_text("---\nid: inside\n---\n")

    def link(target: str) -> Callable[[Path], None]:
        def make(path: Path) -> None:
            os.symlink(target, path)
        return make

    def loop(path: Path) -> None:
        os.symlink(path.name, path)

    def sparse(path: Path) -> None:
        with open(path, "wb") as f:
            f.write(b"---\nid: x\n")
            f.truncate(2 << 30)

    def big(path: Path) -> None:
        path.write_bytes(b"---\nid: " + path.stem.encode() + b"\nx_pad: '" + b"x" * (1 << 20)
                         + b"'\n---\n")

    def to_fifo(path: Path) -> None:
        target = outside / f"{path.name}.fifo"
        os.mkfifo(target)
        os.symlink(target, path)

    outside.mkdir(parents=True, exist_ok=True)
    (outside / "elsewhere.md").write_text("---\nid: elsewhere\nstatus: approved\n---\n")
    kinds = [("fifo", "a FIFO", fifo), ("dir", "a directory", directory),
             ("zero", "a symlink to /dev/zero", link("/dev/zero")),
             ("loop", "a symlink to itself", loop),
             ("dangling", "a dangling symlink", link("nowhere/at/all.md")),
             ("outside", "a symlink out of the vault", link(str(outside / "elsewhere.md"))),
             ("tofifo", "a symlink to a FIFO out of the vault", to_fifo),
             ("sparse", "a sparse 2 GiB file", sparse),
             ("big", "a regular file just over 1 MiB", big)]
    return [Mutant(folder, f"{stem}-{k}", name, make) for k, name, make in kinds]

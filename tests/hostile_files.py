"""Hypothesis strategies for hostile vault files: the text a person, a sync tool or a
broken script may leave in the vault, for the contract tests of issue 9.

Every strategy produces TEXT (what lands on disk), never Python values: what is
under test is what a reader makes of bytes it did not write. Three families of
values, so that each known defect has a property of its own:

- `value()`: any YAML value: null/bool/int (huge too), float (inf, nan, 1e400),
  strings with NUL and lone surrogates, timestamps out of range, tags, flow
  lists and maps nested a few levels, maps as list items where a string is
  expected, and the reverse;
- `deep`: the same, nested hundreds of levels (issue 9 defect 1: RecursionError);
- `complex_keys`: mapping keys that are lists or maps (defect 1: TypeError).

Documents (`Docs(family).plan(id)`, `.cron`, `.ticket`, `.config`) are mostly well
shaped, with each key hostile now and then (`HOSTILE_ONE_IN`), so that a good
share of them is accepted by the readers and reaches the consumers. JSON-line
files (usage, events, heartbeats, the daemon's records): `json_line`.
"""

from __future__ import annotations

import json
import socket

from hypothesis import strategies as st

HOSTILE_ONE_IN = 12
"""About one top-level key in this many gets a hostile value instead of a plausible one;
inside a map or list item (a step, a reflection entry, the claim) one in NESTED_ONE_IN."""
NESTED_ONE_IN = 40

# --- scalars ------------------------------------------------------------------------------

SPECIAL_TOKENS = [
    "null", "~", "true", "false", "yes", "no", "on", "0", "-1", "1", "+12", "1_000",
    "0x1F", "0o17", "0b101", "1:30:00", "1e400", "-1e400", "1e-400", ".inf", "-.inf",
    ".nan", ".NaN", "3.", "-0.0", "9" * 400, "-" + "9" * 5000,
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01", "2025-02-29",
    "2025-11-04T10:00:00Z", "2025-11-04 10:00:00", "2025-11-04T10:00:00", "1970-01-01",
    '"\\0"', '"a\\0b"', '"\\ud800"', '"\\U0001F600"', "'single ''quoted'''", '""', "''",
    "!!binary aGVsbG8=", "!!str 12", "!!int 12", "!!float 1.5", "!!null ''",
    "!!timestamp 2025-11-04", "!custom thing", "!!set {a, b}", "!!omap [{a: 1}, {b: 2}]",
    "!!python/name:os.system", "<<",
]
WORDS = ["approved", "executing", "paused", "draft", "completed", "failed", "aborted",
         "mock", "default", "pause", "abort", "continue", "ok", "timeout", "error",
         "interrupted", "retry", "revise-major", "P", "P-P-001", "echo", "10m", "2h", "90s",
         "1h30m", "1d", "0s", "-5m", "nan", "inf", "plugin:x", "a=b", "x:y", "mod.path:fn"]


def quoted(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A double-quoted YAML scalar (JSON's escapes are YAML's too)."""
    return text.map(json.dumps)


def _float_token(x: float) -> str:
    if x != x:
        return ".nan"
    if x in (float("inf"), float("-inf")):
        return ".inf" if x > 0 else "-.inf"
    return repr(x)


def scalar() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(SPECIAL_TOKENS),
        st.sampled_from(WORDS),
        st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
        st.integers(min_value=-3, max_value=5).map(str),
        st.floats().map(_float_token),
        quoted(st.text(max_size=12)),
        quoted(st.sampled_from(["\0", "a\0b", "A=B", "=", "", " ", "\n", "é", "\x85", "\u2028"])),
    )


def flow_key(complex_keys: bool) -> st.SearchStrategy[str]:
    plain = st.one_of(st.sampled_from(["a", "k", "token", "index", "duration_s", "A", "A=B"]),
                      scalar())
    if not complex_keys:
        return plain
    return st.one_of(plain, st.builds(lambda v: f"[{v}]", scalar()),
                     st.builds(lambda k, v: f"{{{k}: {v}}}", plain, scalar()),
                     st.builds(lambda k, v: f"[{{{k}: {v}}}]", plain, scalar()))


def value(complex_keys: bool = False, max_leaves: int = 8) -> st.SearchStrategy[str]:
    """Any YAML value written in flow style (fits after `key: ` or `- `)."""
    def collections(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
            st.lists(st.tuples(flow_key(complex_keys), children), max_size=4).map(
                lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"),
        )
    return st.recursive(scalar(), collections, max_leaves=max_leaves)


def deep_value() -> st.SearchStrategy[str]:
    """A value nested hundreds of levels: lists, maps, or both in turn."""
    def build(depth: int, kind: str, leaf: str) -> str:
        if kind == "list":
            return "[" * depth + leaf + "]" * depth
        if kind == "map":
            return "{a: " * depth + leaf + "}" * depth
        return "[{a: " * (depth // 2) + leaf + "}]" * (depth // 2)
    return st.builds(build, st.sampled_from([150, 260, 320]),
                     st.sampled_from(["list", "map", "mixed"]), scalar())


# --- documents ----------------------------------------------------------------------------

def maybe_hostile(plausible: st.SearchStrategy[str], hostile: st.SearchStrategy[str],
                  one_in: int = HOSTILE_ONE_IN):
    """Mostly `plausible`; hostile one time in `one_in`. The simplest draw (the one
    hypothesis starts from and shrinks to) is the plausible one."""
    return st.integers(0, one_in - 1).flatmap(lambda n: hostile if n == one_in - 1 else plausible)


def flow_map(pairs: dict[str, st.SearchStrategy[str]], optional: tuple[str, ...] = ()):
    """A flow map of these keys (the optional ones present or not), values as drawn."""
    @st.composite
    def build(draw):
        items = []
        for key, strategy in pairs.items():
            if key in optional and not draw(st.booleans()):
                continue
            items.append(f"{key}: {draw(strategy)}")
        return "{" + ", ".join(items) + "}"
    return build()


def block_list(items: st.SearchStrategy[str], min_size: int = 0) -> st.SearchStrategy[str]:
    return st.lists(items, min_size=min_size, max_size=3).map(
        lambda xs: "".join(f"\n  - {x}" for x in xs) if xs else " []")


TIMES = st.sampled_from(["2025-11-04T10:00:00Z", '"2025-11-04T10:00:00Z"', "2025-11-04",
                         "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                         "2025-11-04T10:00:00+14:00", '"yesterday"'])
TEXT = st.one_of(st.sampled_from(WORDS), quoted(st.text(min_size=1, max_size=16)))
SMALL = st.integers(min_value=0, max_value=4).map(str)


class Docs:
    """The document strategies of one family of hostile values, built once."""

    def __init__(self, hostile: st.SearchStrategy[str], complex_keys: bool = False):
        self.hostile = hostile
        self.complex_keys = complex_keys
        h = self.hn
        self.step = self._step()
        self.reflection_entry = flow_map({
            "index": h(SMALL), "title": h(TEXT), "attempt": h(SMALL),
            "outcome": h(st.sampled_from(["ok", "failed", "timeout", "error", "interrupted"])),
            "exit": h(TEXT), "started_at": h(TIMES), "ended_at": h(TIMES),
            "duration_s": h(st.sampled_from(["1.5", "0", "3600", "abc", ".nan", "1e400", "-2"])),
            "decision": h(st.sampled_from(["continue", "retry", "pause"])),
            "token": h(SMALL),
        }, optional=("title", "exit", "started_at", "ended_at", "duration_s", "decision",
                     "token"))
        self.plan_keys = {
            "title": TEXT,
            "status": st.sampled_from(["approved", "executing", "paused", "approved",
                                       "executing", "paused", "draft", "completed", "failed",
                                       "aborted"]),
            "priority": SMALL,
            "sub_objectives": block_list(self.step, min_size=1),
            "current_index": st.sampled_from(["0", "1"]),
            "reflection_log": block_list(self.reflection_entry, min_size=1),
            "claim": flow_map({"host": h(TEXT), "pid": h(SMALL), "token": h(SMALL),
                               "claimed_at": h(TIMES)}, optional=("host", "pid", "claimed_at")),
            "in_flight": flow_map({"index": h(SMALL), "attempt": h(SMALL), "token": h(SMALL),
                                   "started_at": h(TIMES)},
                                  optional=("attempt", "token", "started_at")),
            "budget": flow_map({"tokens": h(st.sampled_from(["500000", "1", "100", "1e400"])),
                                "cost_usd": h(st.sampled_from(["5.0", "0.000001", ".inf"])),
                                "wall_clock": h(st.sampled_from(["2h", "1", ".nan", "0.1"]))},
                               optional=("tokens", "cost_usd", "wall_clock")),
            "rev": SMALL,
            "approved_at": TIMES,
            "execution_started_at": TIMES,
            "completed_at": TIMES,
            "last_error": TEXT,
            "cwd": st.sampled_from([".", "sub", "nowhere"]),
            "reflector": st.sampled_from(['"exit 1"', "plugin:nobody", '"echo {}"']),
        }
        self.cron_keys = {
            "objective": TEXT,
            "schedule": st.sampled_from(['"0 6 * * *"', "'@daily'", '"*/5 * * * *"',
                                         '"61 * * * *"', '"0 0 30 2 *"', "'@reboot'"]),
            "timezone": st.sampled_from(["Europe/Berlin", "UTC", "Nowhere/Land", '""']),
            "steps": block_list(st.one_of(TEXT, st.just('["echo", "a"]'))),
            "enabled": st.sampled_from(["true", "false"]),
            "catch_up": st.sampled_from(["none", "one", "all", "x"]),
            "overlap": st.sampled_from(["skip", "allow", "x"]),
            "approve": st.sampled_from(["true", "false"]),
            "created_at": TIMES,
            "last_fired_for": TIMES,
            "template": st.sampled_from(["P-P-001", "nope"]),
        }
        self.ticket_keys = {
            "severity": st.sampled_from(["warning", "critical", "x"]),
            "reason": TEXT,
            "created_at": TIMES,
            "checkpoint": flow_map({"current_index": SMALL, "rev": SMALL}),
            "decision": st.sampled_from(["approve", "decline", "pending", "approve"]),
            "status": st.sampled_from(["open", "open", "closed", "x"]),
        }
        self.config_keys = {
            "timezone": st.sampled_from(["Europe/Berlin", "UTC", "Nowhere/Land"]),
            "defaults": flow_map({"timeout": h(st.sampled_from(["1h", "10", ".nan", "0"]))}),
            "reflector": st.sampled_from(['"exit 1"', "plugin:nobody"]),
            "agents": flow_map({"default": h(st.sampled_from(
                                    ["{use: mock}", "{use: default}", "{run: 'true'}",
                                     '{run: ["a\\0b"]}'])),
                                "writer": h(st.sampled_from(["{run: [sh, -c, 'true']}",
                                                             "{use: nobody}"]))},
                               optional=("writer",)),
        }
        extras = [st.just("x_note: a key of the person's own"), st.just("# a comment line"),
                  st.builds(lambda v: f"x_value: {v}", hostile)]
        if complex_keys:
            extras += [st.builds(lambda v: f"? - a: 1\n: {v}", scalar()),
                       st.builds(lambda v: f"? [{v}]\n: x", scalar()),
                       st.builds(lambda v: f"? {{a: {v}}}\n: x", scalar())]
        self.extras = st.lists(st.one_of(*extras), max_size=2, unique_by=lambda x: x[:3])

    def h(self, plausible: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return maybe_hostile(plausible, self.hostile)

    def hn(self, plausible: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return maybe_hostile(plausible, self.hostile, NESTED_ONE_IN)

    def _step(self) -> st.SearchStrategy[str]:
        h = self.hn
        # Plausible: what the reader accepts today, including the defects' values.
        common = {"timeout": h(st.sampled_from(["10m", "90", "0.5", '"1h30m"', ".nan", ".inf",
                                                "1e400"])),
                  "retries": h(SMALL),
                  "on_failure": h(st.sampled_from(["pause", "abort", "continue"])),
                  "rerun_after_crash": h(st.sampled_from(["true", "false"])),
                  "cwd": h(st.sampled_from([".", '"sub dir"', "/", "nowhere"])),
                  "env": h(flow_map({"A": TEXT, "B_2": TEXT}, optional=("A", "B_2")))}
        optional = ("title", "agent", *common)
        executors = {
            "objective": {"objective": h(TEXT),
                          "agent": h(st.sampled_from(["default", "mock", "nobody"]))},
            "run": {"run": h(quoted(st.sampled_from(["true", "echo hi", "exit 3", "a\0b"])))},
            "run_list": {"run": h(st.lists(TEXT, min_size=1, max_size=3).map(
                lambda a: "[" + ", ".join(a) + "]"))},
            "call": {"call": h(st.sampled_from(["mod.path:fn", "x:y"]))},
        }
        return st.one_of(TEXT, *(flow_map({"title": h(TEXT), **e, **common}, optional)
                                 for e in executors.values()))

    def frontmatter(self, keys: dict[str, st.SearchStrategy[str]],
                    required: tuple[str, ...], fixed: dict[str, str]):
        """A whole file: `---`, one top-level key a line (or a block under it), `---`, a
        body. Values are written the ways people write them: flow after the key, a block
        list, a block scalar (`|`, `>-`) for a word; now and then a top-level oddity: a
        person's own key, a comment, a complex key (family complex_keys)."""
        @st.composite
        def build(draw):
            lines = [f"{k}: {v}" for k, v in fixed.items()]  # the file's identity
            for key, strategy in keys.items():
                if key not in required and not draw(st.booleans()):
                    continue
                text = draw(self.h(strategy))
                if draw(st.integers(0, 5)) == 5 and not text.startswith(("\n", "[", "{", " ")):
                    indicator = draw(st.sampled_from([">-", "|-", ">-", "|"]))
                    lines.append(f"{key}: {indicator}\n  {text}")
                else:
                    lines.append(f"{key}:{text}" if text.startswith(("\n", " ")) else
                                 f"{key}: {text}")
            lines += draw(self.extras)
            order = draw(st.permutations(range(len(lines))))
            text = "---\n" + "\n".join(lines[i] for i in order) + "\n---\nThe body.\n"
            return text.replace("\n", "\r\n") if draw(st.integers(0, 7)) == 7 else text
        return build()

    def plan(self, plan_id: str):
        return self.frontmatter(self.plan_keys, ("status", "sub_objectives"), {"id": plan_id})

    def cron(self, entry_id: str):
        return self.frontmatter(self.cron_keys, ("objective", "schedule"), {"id": entry_id})

    def ticket(self, ticket_id: str, plan_id: str):
        return self.frontmatter(self.ticket_keys, ("decision",),
                                {"id": ticket_id, "plan": plan_id})

    def config(self):
        """config.yaml has no `---` lines: the frontmatter's head alone."""
        return self.frontmatter(self.config_keys, (), {}).map(
            lambda text: text.split("---", 2)[1].lstrip("\r\n"))


# --- JSON lines: usage, events, heartbeats, records ------------------------------------------

JSON_TOKENS = ["NaN", "Infinity", "-Infinity", "1e400", "-0", "9" * 5000, '"\\u0000"',
               '"\\ud800"', "null", "true", "[]", "{}", '"2025-11-04T10:00:00Z"',
               '"0001-01-01T00:00:00+01:00"', '"9999-12-31T23:59:59Z"']
DEEP_JSON = ["[" * 3000 + "]" * 3000, '{"a": ' * 3000 + "1" + "}" * 3000]


def json_value(deep: bool = False) -> st.SearchStrategy[str]:
    leaf = st.one_of(st.sampled_from(JSON_TOKENS + (DEEP_JSON if deep else [])),
                     st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
                     st.sampled_from(["-1", "0", "1", "2", "123456789"]),
                     st.floats(allow_nan=False, allow_infinity=False).map(repr),
                     st.text(max_size=10).map(json.dumps))
    return st.recursive(leaf, lambda c: st.one_of(
        st.lists(c, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(st.text(max_size=5), c, max_size=3).map(
            lambda d: "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in d.items()) + "}")),
        max_leaves=6)


def json_object(fields: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[str]:
    """A JSON object of these fields, each plausible or hostile, some left out."""
    hostile = json_value()

    @st.composite
    def build(draw):
        items = []
        for key, strategy in fields.items():
            if draw(st.integers(0, 4)) == 4:
                continue
            items.append(f"{json.dumps(key)}: {draw(maybe_hostile(strategy, hostile))}")
        return "{" + ", ".join(items) + "}"
    return build()


J_TIME = st.sampled_from(['"2025-11-04T10:00:00Z"', '"2025-11-04T10:00:00.123456Z"',
                          '"0001-01-01T00:00:00+01:00"', '"9999-12-31T23:59:59-01:00"'])
J_INT = st.sampled_from(["0", "1", "3", "100", "-1"])
J_TEXT = st.sampled_from(['"P"', '"P-P-001"', '"x"', '"P/plans/P-P-001.md"', '"/etc/passwd"'])

USAGE = json_object({"timestamp": J_TIME, "model": J_TEXT, "input_tokens": J_INT,
                     "output_tokens": J_INT, "cost_usd": st.sampled_from(["0.5", "0", "1e-9"]),
                     "call_id": J_TEXT, "agent_id": J_TEXT, "plan_id": J_TEXT,
                     "step_index": J_INT, "attempt": J_INT, "duration_s": J_INT})
EVENT = json_object({"ts": J_TIME, "event": st.sampled_from(
    ['"step_ended"', '"cron_fired"', '"cron_missed"', '"cron_skipped"', '"file_refused"',
     '"claimed"']), "host": J_TEXT, "pid": J_INT, "project": J_TEXT, "plan": J_TEXT,
    "cron": J_TEXT, "outcome": st.sampled_from(['"failed"', '"ok"']), "count": J_INT,
    "reason": J_TEXT, "path": J_TEXT, "kind": J_TEXT, "line": J_INT})
HEARTBEAT = json_object({"pid": st.sampled_from(["1", "999999", "-1", "0", "4194305"]),
                         "host": st.sampled_from([json.dumps(socket.gethostname()),
                                                  '"elsewhere"']),
                         "started_at": J_TIME, "last_tick": J_TIME, "tick_seconds": J_INT,
                         "active_plan": J_TEXT, "step": J_INT, "version": J_TEXT})
RECORD = json_object({"rev": J_INT, "status": st.sampled_from(['"executing"', '"paused"',
                                                                '"nonsense"']),
                      "keys": st.just('{"current_index": 1, "reflection_log": [], '
                                      '"claim": null, "in_flight": null, "rev": 3}'),
                      "status_by_rev": st.just('[[0, "approved"], [3, "executing"]]')})


def json_lines(record: st.SearchStrategy[str], deep: bool = False) -> st.SearchStrategy[str]:
    """Lines of a JSON-lines file: records, and now and then a torn or foreign line (with
    `deep`, nested thousands of levels)."""
    return st.lists(st.one_of(record, record, record, json_value(deep), st.text(max_size=20)),
                    max_size=4).map(lambda lines: "".join(line + "\n" for line in lines))

"""Issue 9, item 8: the contract of every reader of vault files.

1. Readers, given arbitrary bytes or hostile YAML / JSON lines, raise BadFile (the
   project's bad-file error, which names the file and the line) or return. Nothing
   else: no TypeError, RecursionError, OverflowError, UnicodeError...
2. The scan's cheap status look agrees with the full parse, so an approved plan is
   never silently skipped.

What consumes the readers' values (the commands, the daemon's claim, runner,
budget and step preparation) is the slower half of the contract:
tests/e2e/test_contract_consumers.py. The readers are reached through the table
in tests/contract_adapters.py (a rename is a one-line fix there); the hostile
values come from tests/hostile_files.py.

Each known defect has a property of its own (a family of values) with the issue's
reproducer as an explicit @example: while the defect stands the property fails on
it at once (no search, no shrinking), and the property is xfail(strict=True)
naming the defect; the fix shows up as XPASS and the marker goes. Examples are
few and derandomized (the same every run), to fit the unit lane.
"""

from __future__ import annotations

import socket
from pathlib import Path

import hostile_files as hf
from contract_adapters import JSON_KINDS, READERS, Vaults, parse_text, production_stack, read
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modulatio_d.core import peek
from modulatio_d.core.errors import BadFile
from modulatio_d.core.plan import PlanStatus

CONTRACT = settings(max_examples=30, derandomize=True, database=None, deadline=None,
                    print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example,
                                           HealthCheck.filter_too_much])
FEW = settings(CONTRACT, max_examples=10)


GENERAL = hf.Docs(hf.value())
DEEP = hf.Docs(hf.deep_value())
COMPLEX = hf.Docs(hf.value(complex_keys=True), complex_keys=True)


def markdown_files(docs: hf.Docs) -> st.SearchStrategy[tuple[str, str]]:
    """(kind, text) for the four kinds of Markdown/YAML files, from one family."""
    return st.one_of(st.tuples(st.just("plan"), docs.plan("P-P-001")),
                     st.tuples(st.just("cron"), docs.cron("P-C-001")),
                     st.tuples(st.just("ticket"), docs.ticket("P-P-001-T-01", "P-P-001")),
                     st.tuples(st.just("config"), docs.config()))


def reads_or_refuses(base: Path, kind: str, text: str | bytes) -> None:
    vault = Vaults(base).new({READERS[kind][0]: text})
    with production_stack():
        read(kind, vault)
        if kind == "plan":
            try:
                parse_text(text if isinstance(text, str) else
                           text.decode("utf-8", "surrogateescape"))
            except BadFile:
                pass


# --- 1. readers ------------------------------------------------------------------------------

@CONTRACT
@given(st.sampled_from(sorted(READERS)),
       st.one_of(st.binary(max_size=400), st.binary(max_size=400).map(lambda b: b"---\n" + b),
                 st.binary(max_size=200).map(lambda b: b"---\nid: P-P-001\n" + b + b"\n---\n")))
def test_readers_on_arbitrary_bytes_refuse_or_return(tmp_path_factory, kind, data):
    reads_or_refuses(tmp_path_factory.mktemp("b"), kind, data)
    reads_or_refuses(tmp_path_factory.mktemp("b"), "plan", data)


@CONTRACT
@given(markdown_files(GENERAL))
@example(("plan", "---\nid: P-P-001\nstatus: approved\nsub_objectives:\n"
                  "  - {title: a, run: 'true', timeout: .nan}\nreflection_log: [1, 2]\n"
                  "claim: {token: 1e400}\nexecution_started_at: 0001-01-01T00:00:00+01:00\n"
                  "---\n"))
def test_markdown_readers_on_hostile_yaml_refuse_or_return(tmp_path_factory, kind_and_text):
    reads_or_refuses(tmp_path_factory.mktemp("y"), *kind_and_text)


# The reproducers as explicit examples: while the defect stands the property fails
# on them at once (no search, no shrinking); once fixed, the search goes on from there.
DEEP_PLAN = "---\nid: P-P-001\nstatus: approved\nsub_objectives: " + "[" * 320 + "]" * 320 \
    + "\n---\n"


@FEW
@given(markdown_files(DEEP))
@example(("plan", DEEP_PLAN))
def test_markdown_readers_on_deeply_nested_yaml_refuse_or_return(tmp_path_factory,
                                                                  kind_and_text):
    reads_or_refuses(tmp_path_factory.mktemp("d"), *kind_and_text)


@FEW
@given(markdown_files(COMPLEX))
@example(("plan", "---\nid: P-P-001\nstatus: approved\nsub_objectives: [a]\n"
                  "? - a: 1\n: v\n---\n"))
@example(("cron", "---\nid: P-C-001\nobjective: o\nschedule: '@daily'\n? - a: 1\n: v\n---\n"))
@example(("ticket", "---\nid: P-P-001-T-01\nplan: P-P-001\ndecision: approve\n"
                    "? - a: 1\n: v\n---\n"))
@example(("config", "agents: {}\n? - a: 1\n: v\n"))
def test_markdown_readers_on_complex_keys_refuse_or_return(tmp_path_factory, kind_and_text):
    reads_or_refuses(tmp_path_factory.mktemp("c"), *kind_and_text)


JSON_FILES = {"usage": hf.USAGE, "events": hf.EVENT, "heartbeat": hf.HEARTBEAT,
              "record": hf.RECORD}


def json_files(deep: bool = False) -> st.SearchStrategy[tuple[str, str]]:
    return st.sampled_from(JSON_KINDS).flatmap(
        lambda kind: st.tuples(st.just(kind), hf.json_lines(JSON_FILES[kind], deep)))


@CONTRACT
@given(json_files())
@example(("usage", '{"input_tokens": ' + "9" * 5000 + "}\n"))
@example(("heartbeat", f'{{"pid": {10 ** 30}, "host": "{socket.gethostname()}", '
                       '"last_tick": "2025-11-04T10:00:00Z"}\n'))
def test_json_line_readers_refuse_or_return(tmp_path_factory, kind_and_text):
    reads_or_refuses(tmp_path_factory.mktemp("j"), *kind_and_text)


@FEW
@given(json_files(deep=True))
@example(("events", hf.DEEP_JSON[0] + "\n"))
def test_json_line_readers_on_deeply_nested_lines_refuse_or_return(tmp_path_factory,
                                                                    kind_and_text):
    reads_or_refuses(tmp_path_factory.mktemp("j"), *kind_and_text)


# --- 2. the scan's cheap look agrees with the parse ------------------------------------------

@CONTRACT
@given(GENERAL.plan("P-P-001"))
@example("---\nid: P-P-001\nstatus: >-\n  approved\nsub_objectives: [a]\n---\n")
def test_the_status_peek_never_hides_a_plan_the_parse_accepts(text):
    try:
        plan = parse_text(text)
    except BadFile:
        return
    peeked = peek.peek_status(text)
    statuses = {s.value for s in PlanStatus}
    if "status" in plan.data:
        # Right, or a word that is no status at all: the scan then parses the file fully.
        assert peeked == plan.status.value or (peeked is not None and peeked not in statuses), \
            (peeked, plan.status)
    else:
        assert peeked is None

"""The fast reader (libyaml, core/fastyaml) and the round-trip reader (ruamel) agree.

markdown.load_mapping reads with libyaml and asks ruamel only about what fastyaml
does not decide. These tests hold it to ruamel's YAML 1.2 meanings on every value:
for every text, the project accepts it exactly when ruamel (with the earlier
anchor screen) accepts it, and then its values are ruamel's (types included, after
yaml_text.plain for times and ruamel's own scalar classes) and so are the lines of
its keys. (libyaml refuses a few texts ruamel reads, such as the surrogate pair
escapes JSON writers use; ruamel reads those.)
"""

from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulatio_d.core import fastyaml, markdown
from modulatio_d.core.errors import BadFile
from modulatio_d.core.yaml_text import plain

P = Path("plan.md")

TRICKY = [
    "yes", "no", "on", "off", "Yes", "NO", "y", "n", "true", "True", "TRUE", "tRue", "false",
    "0755", "0o755", "0x1F", "0X1F", "0b101", "1_000", "1:30", "190:20:30", "-1:30", ".inf",
    "-.Inf", "+.INF", ".NaN", ".nan", "1e3", "1E3", "1e+3", "1.0e+3", "12e03", "1.5", "+12",
    "-0", "0", "00", "09", "08.5", "1.", "0.", "._5", ".5", "-.5", "1_0.5", "0.1_0", "1e3_0",
    "0x_1", "+0x1F", "-0o7", "0o8", "1__2", "_1", "0b", "0b_", "0x", "0o", "-", "+", ".",
    "2025-11-03", "2025-1-3", "2025-11-03T10:00:00Z", "2025-11-03 10:00:00",
    "2025-11-03t10:00:00.5+02:00", "2025-11-03T10:00:00.1234567Z", "2025-11-03T10:00:00 -5",
    "2025-11-03T10:00:00+0200", "2025-11-03T10:00", "2025-13-01", "2025-02-30T10:00:00Z",
    "~", "null", "Null", "NULL", "nULL", "", "=", "<<", "!!str 5", "!!int '5'", "!!float 1",
    "!!binary aGVsbG8=", "!!timestamp 2025-11-03", "'1'", '"\\x41"', '"\\u00e9\\t"',
    "'it''s'", "a b", "a: b", "a #c", "[1, 2]", "{a: 1}", "[a, {b: [c, 2025-11-03]}]",
    "{at: 2025-11-03T10:00:00Z}", '"\\ud83d\\ude00"', '"\\ud800"', "|\n  a\n  b\n",
    ">-\n  a\n  b\n", "&a 1", "*a", "!!set {a}", "!!omap [a: 1]", "? a", "[a]", "@x", "`x",
    "%x", "a\tb", "'a\n  b'", '"a\\\n  b"', "- 1\n- 2", "\n  - 1\n  - [2, 3]",
    "\n  x: 1\n  y: [a, b]", "\n  x: 1\n  x: 2",
]


def _ruamel_anchors(text: str) -> bool:
    """The project's earlier screen: any anchor or alias in ruamel's events."""
    from ruamel.yaml.events import AliasEvent, NodeEvent

    try:
        return any(isinstance(e, AliasEvent) or (isinstance(e, NodeEvent) and e.anchor)
                   for e in markdown._yaml().parse(text))
    except Exception:  # noqa: BLE001 (the load reports it)
        return False


def _outcome_ruamel(text: str) -> object:
    """What the project did before the fast reader: ruamel's round trip, anchors refused."""
    if _ruamel_anchors(text):
        return ("refused", None)
    try:
        return ("ok", markdown._load_round_trip(P, text, 1))
    except BadFile:
        return ("refused", None)


def _outcome_project(text: str) -> object:
    try:
        return ("ok", markdown.load_mapping(P, text, 1))
    except BadFile:
        return ("refused", None)


def _same(a: object, b: object) -> bool:
    """Equal values of the same plain types (NaN equals NaN; ruamel's TimeStamp is a time)."""
    if isinstance(a, datetime) and isinstance(b, datetime):
        return (a.replace(tzinfo=None), a.utcoffset()) == (b.replace(tzinfo=None), b.utcoffset())
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)  # type: ignore
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)  # type: ignore[arg-type]
    return a == b


def _raw_kind(value: object) -> object:
    """The kind a consumer's isinstance checks see in a raw (unplained) value."""
    for kind in (bool, int, float, datetime, date, str, dict, list):
        if isinstance(value, kind):
            return kind
    return type(value)


def _raw_same(a: object, b: object) -> bool:
    if _raw_kind(a) is not _raw_kind(b):
        return False
    if isinstance(a, dict):
        return all(_raw_same(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, list):
        return all(_raw_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return True


def check_agree(text: str) -> None:
    ruamel = _outcome_ruamel(text)
    project = _outcome_project(text)
    if ruamel[0] == "refused":
        assert project[0] == "refused", f"accepted what ruamel refuses: {text!r}"
        return
    assert project[0] == "ok", f"refused what ruamel accepts: {text!r}"
    assert _same(plain(project[1]), plain(ruamel[1])), text
    assert _raw_same(project[1], ruamel[1]), text
    for key in ruamel[1]:  # the lines messages point at
        assert project[1].lc.key(key)[0] == ruamel[1].lc.key(key)[0], (text, key)


@pytest.mark.parametrize("scalar", TRICKY)
def test_a_tricky_value_reads_as_ruamel_reads_it(scalar: str) -> None:
    check_agree(f"k: {scalar}\n")
    check_agree(f"k: [{scalar}]\n")
    check_agree(f"k:\n  - {scalar}\n  - x\n")


@pytest.mark.parametrize("scalar", [s for s in TRICKY if "\n" not in s])
def test_a_tricky_key_reads_as_ruamel_reads_it(scalar: str) -> None:
    check_agree(f"{scalar}: v\nother: 1\n")
    check_agree(f"k: {{{scalar}: v}}\n")


def test_a_duplicate_key_is_refused_with_ruamels_message() -> None:
    with pytest.raises(BadFile, match="duplicate key"):
        markdown.load_mapping(P, "a: 1\nb: 2\na: 3\n")
    with pytest.raises(BadFile):
        markdown.load_mapping(P, "k: {1: a, 01: b}\n")


def test_lines_of_keys_and_items_are_kept() -> None:
    data = markdown.load_mapping(P, "a: 1\n# c\nlog:\n  - {x: 1}\n  - two\n", 5)
    assert markdown.line_of(data, "log", 5) == 7
    assert data["log"].lc.item(1)[0] + 5 == 9


def test_the_fast_path_does_not_need_ruamel() -> None:
    data = fastyaml.load("a: 0755\nb: 0o10\nc: 1e3\nd: yes\ne: 2025-11-03\n")
    assert data == {"a": 755, "b": 8, "c": 1000.0, "d": "yes", "e": date(2025, 11, 3)}


_atoms = st.sampled_from([s for s in TRICKY if "\n" not in s and not s.startswith(("!", "&", "*",
                                                                                     "?", "|"))])
_words = st.text(alphabet=st.sampled_from(list("ab01:_-.#'\" \t{}[],~Z+eE\\xT")), max_size=12)


@st.composite
def _texts(draw: st.DrawFn) -> str:
    lines = []
    for i in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(["k", "log", "1", "true", "a b", f"k{i}", "'q'", '"d"']))
        atom = draw(st.one_of(_atoms, _words))
        shape = draw(st.sampled_from(["scalar", "flow", "block", "map"]))
        if shape == "scalar":
            lines.append(f"{key}: {atom}")
        elif shape == "flow":
            lines.append(f"{key}: [{atom}, {draw(st.one_of(_atoms, _words))}]")
        elif shape == "block":
            lines.append(f"{key}:\n  - {atom}\n  - {draw(st.one_of(_atoms, _words))}")
        else:
            lines.append(f"{key}: {{x: {atom}, y: {draw(st.one_of(_atoms, _words))}}}")
    return "\n".join(lines) + "\n"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_texts())
def test_any_text_reads_as_ruamel_reads_it_or_is_refused(text: str) -> None:
    check_agree(text)


@pytest.mark.parametrize("text", [
    "k: ['x':]\n", 'k: ["x":]\n', "k: ['x':, b]\n", "k: [b, 'x' :]\n", "1: [yes, '':]\n",
    "k: ['x': ]\n", "k: [x: ]\n", "k: {'x':}\n", "k: ['x':\n  ]\n", "k: [a:b]\n",
    "k: 'a:]'\n", "k: [http://x, b]\n",
])
def test_a_colon_before_a_flow_indicator_reads_as_ruamel_reads_it(text: str) -> None:
    # libyaml reads `['x':]` as a pair with a null value; ruamel refuses it (found by
    # the random texts below): such a text is decided by ruamel.
    check_agree(text)

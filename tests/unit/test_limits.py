"""What YAML is refused before it is parsed or once loaded (core/limits.py), through the
one loader every plan, cron entry, ticket and config goes through: nesting past
MAX_DEPTH (refused before ruamel recurses, and cheaply), complex keys, lone surrogates
(and times UTC cannot hold, where a time is read). The screen's bound is checked
against ruamel's own event stream on generated texts."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent

from modulatio_d.core import limits, markdown
from modulatio_d.core.errors import BadFile
from modulatio_d.core.limits import MAX_DEPTH, nesting_bound
from modulatio_d.store import config

P = Path("X.md")


def load(head: str) -> dict:
    return markdown.load(P, f"---\nid: X\n{head}---\nbody\n").data


def ruamel_depth(text: str) -> tuple[int, bool]:
    """(deepest nesting ruamel's events reach, whether it read the whole text)."""
    depth = deepest = 0
    try:
        for event in YAML(typ="rt").parse(io.StringIO(text)):
            if isinstance(event, CollectionStartEvent):
                depth += 1
                deepest = max(deepest, depth)
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
    except Exception:
        return deepest, False
    return deepest, True


ATOMS = st.sampled_from([
    "[", "]", "{", "}", ",", ": ", ":", "- ", "? ", "#", " #", "'", '"', "''", "\\", "|",
    ">", "|-", "a", "b c", "\n", "\n  ", "\n    ", "\n- ", "\nk: ", "\n  k: ", "!", "&a",
    "*a", "\t", "-", "x: |\n  ", "\"a]\"", "'[b'"])


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(ATOMS, max_size=50))
def test_the_screen_never_says_less_than_ruamel_finds(parts):
    text = "".join(parts)
    bound = nesting_bound(text)
    found, whole = ruamel_depth(text)
    assert bound.bound >= found, (text, bound)


def nested(depth: int) -> st.SearchStrategy:
    leaf = st.text(alphabet="[]{}'\"#:,- ab|>\\", max_size=8) | st.integers()
    return st.recursive(leaf, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(alphabet="ab:# [", max_size=4), inner,
                                          max_size=3), max_leaves=depth)


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(nested(40), st.booleans())
def test_on_what_ruamel_writes_the_flow_count_is_exact(value, flow):
    y = YAML()
    y.default_flow_style = flow
    out = io.StringIO()
    y.dump({"k": value}, out)
    bound = nesting_bound(out.getvalue())
    found, whole = ruamel_depth(out.getvalue())
    assert bound.bound >= found
    if bound.sure and whole:
        assert bound.flow <= found  # so a refusal on it alone is never a false one


@pytest.fixture
def no_ruamel_load(monkeypatch):
    """The loader must refuse before ruamel composes anything."""
    def refuse(*a, **k):
        raise AssertionError("ruamel was asked to load it")
    monkeypatch.setattr(markdown, "_yaml", refuse)


@pytest.mark.parametrize("head, line", [
    ("sub_objectives:\n  - run: " + "[" * 5000 + "]" * 5000 + "\n", 4),
    ("x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", 3),
    ("x:\n" + "".join(" " * i + "- \n" for i in range(200)), None),
    ("t: \"it's\n  open\"\nx: " + "[" * 300 + "]" * 300 + "\n", 5),  # after what it cannot follow
])
def test_nesting_past_the_limit_is_refused_before_ruamel_loads_it(head, line, no_ruamel_load):
    with pytest.raises(BadFile) as e:
        load(head)
    assert f"nest deeper than {MAX_DEPTH} levels" in str(e.value)
    if line is not None:
        assert str(e.value).startswith(f"X.md:{line}:")


def test_the_limit_itself_is_allowed():
    data = load("x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n")
    assert isinstance(data["x"], list)
    with pytest.raises(BadFile):
        load("x: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n")


def test_a_recursion_in_ruamel_is_a_bad_file_too(monkeypatch):
    """A belt: were the screen to miss one, ruamel's RecursionError is the file's fault."""
    monkeypatch.setattr(limits, "check_text", lambda *a: None)
    with pytest.raises(BadFile, match="nest deeper"):
        load("x:\n" + "".join(" " * i + "- \n" for i in range(1500)))


def test_deep_nesting_that_loads_is_still_refused_after_the_load(monkeypatch):
    monkeypatch.setattr(limits, "check_text", lambda *a: None)
    with pytest.raises(BadFile, match="nest deeper") as e:
        load("x: " + "[" * 100 + "]" * 100 + "\n")
    assert str(e.value).startswith("X.md:3:")


@pytest.mark.parametrize("head", [
    "? - a: 1\n: 1\n",  # ruamel's TypeError: unhashable CommentedMap
    "x:\n  ? - a\n    - b\n  : 1\n",
    "x:\n  ?\n    a: 1\n  : 1\n",
    "x: {[a]: 1}\n",
    "x: {? {a: 1}: 2}\n",
])
def test_a_key_that_is_a_list_or_a_mapping_is_refused_with_a_line(head):
    with pytest.raises(BadFile) as e:
        load(head)
    assert "a key is a list or a mapping" in str(e.value)
    assert str(e.value).startswith("X.md:3:") or str(e.value).startswith("X.md:4:") or \
        str(e.value).startswith("X.md:5:")


def test_a_complex_key_in_the_config_is_refused_not_raised(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("agents:\n  ? - a: 1\n  : {use: mock}\n")
    with pytest.raises(BadFile, match="a key is a list or a mapping"):
        config.load(path)


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_that_cannot_become_utc_is_no_time_where_a_time_is_read(value):
    from modulatio_d.core.plan import parse_plan

    data = load(f"x_note: {value}\n")  # read by nobody: kept as written
    assert data["x_note"].year in (1, 9999)
    with pytest.raises(BadFile, match="is not a time that can be turned into UTC") as e:
        parse_plan(markdown.load(P, f"---\nid: X\nsub_objectives: [a]\n"
                                    f"approved_at: {value}\n---\n"), "X")
    assert str(e.value).startswith("X.md:4:")
    assert markdown.set_keys("---\n---\n", {"x": data["x_note"]})  # written as it was


def test_a_lone_surrogate_is_refused_and_never_written():
    with pytest.raises(BadFile, match="lone surrogate"):
        load('x: "a\\ud800b"\n')
    text = markdown.set_keys("---\nid: X\n---\n", {"last_error": "a\ud800b"})
    assert load("last_error: " + text.split("last_error: ")[1].split("\n")[0] + "\n")


def test_a_surrogate_pair_as_json_writes_it_is_one_character():
    data = load('t: "a\\ud83d\\ude00b"\nl: ["\\ud83d\\ude00"]\n')
    assert data["t"] == "a\U0001F600b" and data["l"] == ["\U0001F600"]
    with pytest.raises(BadFile, match="lone surrogate"):
        load('t: "\\ude00\\ud83d"\n')  # the wrong way round

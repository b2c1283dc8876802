"""The fast reader of a frontmatter: libyaml's C parser, YAML 1.2 meanings, line numbers.

ruamel's round-trip loader (pure Python) costs 4-11 ms a plan file; libyaml's C
composer (PyYAML's CSafeLoader) about 0.5 ms. But PyYAML resolves YAML 1.1
(`yes` is true, `0755` is 493, `1:30` is 90, `2025-11-03` a date either way) and
the project documents YAML 1.2 as ruamel reads it. So only the C parser and
composer are used here: every plain scalar is resolved by this module with the
regular expressions of ruamel's YAML 1.2 resolver, and built the way ruamel's
round-trip constructor builds it (`0755` is 755, `0o755` 493, `1e3` 1000.0,
`._5` 0.5, underscores dropped in numbers, `true|True|TRUE`).

`load` gives what the consumers of ruamel's maps used: dicts and lists that carry
`.lc` (`lc.line`, `lc.key(k)[0]`, `lc.item(i)[0]`, 0-based lines of the text), so
messages keep their lines. It raises `Unsure` for what it does not decide the way
ruamel would (an explicit tag, a merge key `<<`, a key that is a list or a mapping,
a duplicate key, a date that does not exist, a `:` right before `,` `]` or `}`):
the caller then loads with ruamel,
which refuses or reads it exactly as before. A syntax error libyaml finds is a
`yaml.YAMLError` (the caller asks ruamel for its message; what either parser
refuses is refused). tests/unit/test_fastyaml_agrees.py checks that both loaders
give the same values on every text the project accepts.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

import yaml

YAMLError = yaml.YAMLError


class Unsure(Exception):
    """The text holds something only ruamel decides (see the module docstring)."""


_PLAIN = "!plain"
_QUOTED = "!quoted"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _Composer(yaml.CSafeLoader):
    """libyaml composes the nodes; every tag it asks for is a marker resolved below."""

    def resolve(self, kind, value, implicit):  # noqa: ANN001, ANN201 (PyYAML's signature)
        if kind is yaml.ScalarNode:
            return _PLAIN if implicit[0] else _QUOTED
        return _MAP if kind is yaml.MappingNode else _SEQ


class Lines:
    """ruamel's `.lc` as far as this project reads it: 0-based lines."""

    __slots__ = ("line", "col", "_at")

    def __init__(self, line: int, col: int):
        self.line, self.col = line, col
        self._at: dict = {}

    def key(self, key: object) -> tuple[int, int]:
        return self._at[key]

    def item(self, index: int) -> tuple[int, int]:
        return self._at[index]


class Map(dict):
    __slots__ = ("lc",)


class Seq(list):
    __slots__ = ("lc",)


# ruamel.yaml.resolver's YAML 1.2 implicit resolvers, in its order.
_BOOL = re.compile(r"true|True|TRUE|false|False|FALSE")
_FLOAT = re.compile(r"""[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN)""", re.X)
_INT = re.compile(r"""[-+]?0b[0-1_]+
    |[-+]?0o?[0-7_]+
    |[-+]?[0-9_]+
    |[-+]?0x[0-9a-fA-F_]+""", re.X)
_ADJACENT_COLON = re.compile(r":[,\]}]")
_NULL = re.compile(r"~|null|Null|NULL|")
_TIMESTAMP = re.compile(r"""(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})
    |(?P<y>[0-9]{4})-(?P<m>[0-9][0-9]?)-(?P<d>[0-9][0-9]?)
    (?:[Tt]|[ \t]+)(?P<hour>[0-9][0-9]?):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})
    (?:\.(?P<fraction>[0-9]*))?
    (?:[ \t]*(?P<tz>Z|(?P<tz_sign>[-+])(?P<tz_hour>[0-9][0-9]?)(?::(?P<tz_minute>[0-9]{2}))?))?""",
                        re.X)


def _scalar(value: str) -> object:
    """A plain scalar's value as ruamel's round-trip constructor (YAML 1.2) gives it."""
    c = value[:1]
    if c in "tTfF" and _BOOL.fullmatch(value):
        return c in "tT"
    if c in "-+0123456789.":
        if _FLOAT.fullmatch(value):
            return _float(value)
        if c != "." and _INT.fullmatch(value):
            return _int(value)
    if c in "~nN" or not value:
        if _NULL.fullmatch(value):
            return None
    if c in "0123456789" and (m := _TIMESTAMP.fullmatch(value)):
        return _timestamp(m)
    if value in ("<<", "="):
        raise Unsure("a merge key or a value key")
    return value


def _int(text: str) -> int:
    digits = text.replace("_", "")
    sign = -1 if digits[0] == "-" else 1
    digits = digits.lstrip("+-")
    for prefix, base in (("0b", 2), ("0x", 16), ("0o", 8)):
        if digits.startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits)


def _float(text: str) -> float:
    digits = text.replace("_", "").lower()
    sign = -1.0 if digits[0] == "-" else 1.0
    digits = digits.lstrip("+-")
    if digits == ".inf":
        return sign * float("inf")
    if digits == ".nan":
        return float("nan")
    return sign * float(digits)


def _timestamp(m: re.Match) -> date | datetime:
    try:
        if m.group("year"):
            return date(int(m.group("year")), int(m.group("month")), int(m.group("day")))
        fraction = (m.group("fraction") or "").ljust(6, "0")
        if len(fraction) > 6:
            raise Unsure("a time finer than a microsecond (ruamel rounds it)")
        tz = None
        if m.group("tz") == "Z":
            tz = UTC
        elif m.group("tz"):
            delta = timedelta(hours=int(m.group("tz_hour")),
                              minutes=int(m.group("tz_minute") or 0))
            tz = timezone(-delta if m.group("tz_sign") == "-" else delta)
        return datetime(int(m.group("y")), int(m.group("m")), int(m.group("d")),
                        int(m.group("hour")), int(m.group("minute")), int(m.group("second")),
                        int(fraction), tzinfo=tz)
    except (ValueError, OverflowError):
        raise Unsure("a date that does not exist") from None


def _build(node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _PLAIN:
            return _scalar(node.value)
        if node.tag == _QUOTED:
            return node.value
        raise Unsure("an explicit tag")
    lines = Lines(node.start_mark.line, node.start_mark.column)
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _SEQ:
            raise Unsure("an explicit tag")
        seq = Seq()
        seq.lc = lines
        for i, item in enumerate(node.value):
            lines._at[i] = (item.start_mark.line, item.start_mark.column)
            seq.append(_build(item))
        return seq
    if node.tag != _MAP:
        raise Unsure("an explicit tag")
    mapping = Map()
    mapping.lc = lines
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise Unsure("a key that is a list or a mapping")
        key = _build(key_node)
        if isinstance(key, (datetime, float)):  # ruamel's keys: its own classes, str()s
            raise Unsure("a key that is a time or a number with a point")
        if key in mapping:  # ruamel refuses a duplicate key; its message says which
            raise Unsure("a duplicate key")
        lines._at[key] = (key_node.start_mark.line, key_node.start_mark.column,
                          value_node.start_mark.line, value_node.start_mark.column)
        mapping[key] = _build(value_node)
    return mapping


def load(text: str) -> object:
    """The document's value; raises Unsure (ask ruamel) or YAMLError (libyaml refused it)."""
    if "\t" in text:  # libyaml takes a tab inside a plain scalar; ruamel refuses it
        raise Unsure("a tab")
    if _ADJACENT_COLON.search(text):
        # `['k':]`, `['k':, b]`: in a flow sequence libyaml reads a pair with a null value,
        # ruamel refuses it (a flow mapping's `{'k':}` it reads). Rare in a plan: ruamel
        # decides every text with such a colon.
        raise Unsure("a colon right before a flow indicator")
    composer = _Composer(text)
    try:
        node = composer.get_single_node()
    finally:
        composer.dispose()
    return None if node is None else _build(node)


def anchors(text: str) -> int | None:
    """The 0-based line of the first anchor or alias, None when there is none.

    Raises YAMLError on text libyaml cannot parse."""
    parser = yaml.CSafeLoader(text)
    try:
        while (event := parser.get_event()) is not None:
            if isinstance(event, yaml.AliasEvent) or (
                    isinstance(event, yaml.NodeEvent) and event.anchor is not None):
                return event.start_mark.line
            if isinstance(event, yaml.StreamEndEvent):
                return None
    finally:
        parser.dispose()
    return None

"""How deep and how odd a person's YAML may be before it is refused, not parsed.

ruamel is a recursive-descent composer in pure Python: it recurses once per level
of nesting (a RecursionError near 300 levels) and its scanner is quadratic in the
depth of a flow collection written on one line (5,000 `[` cost ten seconds before
that error). So the text is screened first, in one linear pass (`check_text`):

1. `nesting_bound` tokenizes the YAML the way its scanner would (quoted strings,
   comments, plain scalars, block scalars, flow brackets, block indentation) and
   returns an upper bound of the depth of collections. Block nesting is bounded by
   columns: a block collection nested in another starts further right, except a
   sequence written at its key's column, which cannot happen twice in a row, so a
   collection starting at column c is at most 2 (c + 1) deep.
2. While it understood every line (`sure`), its count of open flow collections is
   exact: over MAX_DEPTH, the file is refused at once, with the line. Otherwise
   (wide indentation, or once it met something it does not follow: an unclosed
   quote, a tag, an anchor, after which every later `[` and `{` counts) a bound
   over MAX_DEPTH is checked by ruamel's own event stream (iterative, linear for
   block nesting, stopped at MAX_DEPTH + 1).

After the load, `check_loaded` walks the result without recursion and refuses
what the consumers could not use: nesting over MAX_DEPTH (a belt for the
screen), keys that are lists or mappings (`? ` complex keys, `[a]: b`), and texts
holding a lone surrogate (`"\\ud800"`: printing or encoding it raises). Every
refusal is a BadFile with the line where it is known. (A time that cannot be
turned into UTC is refused by the reader of each key that is a time:
core/times.parse_time says it is no time.)
"""

from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path
from typing import NamedTuple

from modulatio_d.core.errors import BadFile

MAX_DEPTH = 64
"""Collections (lists, mappings) nested deeper than this are refused."""

_PREFIX = re.compile(r"[ ]*(?:[-?:](?:[ \t]+|$))*")  # indentation, then `- `, `? `, `: `
_INDENT = re.compile(r"[ ]*")
_FLOW_PLAIN_END = re.compile(r"[,\[\]{}]|:(?=[ \t,\[\]{}]|$)|[ \t]#")
_BLOCK_PLAIN_END = re.compile(r":(?=[ \t]|$)|[ \t]#")
_BLOCK_SCALAR = re.compile(r"[|>][+-]?(?:[ \t]+#.*)?[ \t]*$")  # no indentation digit


_STRINGS = {'"': re.compile(r'"(?:[^"\\]|\\.)*"'), "'": re.compile(r"'(?:[^']|'')*'")}
_INDICATOR = re.compile(r"[-?:](?:[ \t]+|$)")


class Nesting(NamedTuple):
    bound: int
    """An upper bound of how deep collections nest (block and flow)."""
    line: int
    """The 0-based line where `bound` was first reached."""
    flow: int
    """How deep flow collections (`[...]`, `{...}`) nest, exactly when `sure`."""
    flow_line: int
    sure: bool
    """Every line was understood (else `bound` counts every bracket after the first
    line that was not, and `flow` is 0)."""


def nesting_bound(text: str) -> Nesting:
    """How deep collections nest in `text`, found in one pass (see the module docstring)."""
    lines = text.splitlines()
    # The open flow collections, innermost last: True for a `[` whose current entry
    # is a pair (`[a: 1]`, `[? a]`), which YAML makes a mapping of its own: a level more.
    flow: list[bool | None] = []  # None for a `{`
    pairs = 0
    best = (0, 0)
    deepest = (0, 0)  # of the flow collections alone
    block = 0  # the block bound of the lines so far
    skip_over: int | None = None  # inside a block scalar owned by this column
    content: int | None = None  # the block scalar's indentation, once seen
    for n, line in enumerate(lines):
        if skip_over is not None:
            indent = _INDENT.match(line).end()
            if not line.strip():
                continue
            if indent > skip_over and (content is None or indent >= content):
                content = indent if content is None else content
                continue
            if indent > skip_over:  # less indented than its first line: not followed
                return _unsure(lines, n, len(flow) + pairs, block, best)
            skip_over = content = None
        i = _INDENT.match(line).end()
        owner = None  # the column of the key or `- ` that a block scalar on this line has
        while (m := _INDICATOR.match(line, i)) is not None:
            owner, i = i, m.end()
        if not flow and 2 * (i + 1) > block:
            block = 2 * (i + 1)
            if len(flow) + pairs + block > best[0]:
                best = (len(flow) + pairs + block, n)
        start = True  # at the start of a token
        quoted = False  # the token before was a quoted scalar (`"a":b` is a pair)
        while i < len(line):
            c = line[i]
            if c in " \t":
                i += 1
                start = True
                continue
            if c == "#" and start:
                break
            i += 1
            after = line[i:i + 1]
            if c in "[{":
                flow.append(False if c == "[" else None)
            elif c in "]}":
                if flow and flow.pop():
                    pairs -= 1
            elif c == "," and flow:
                if flow[-1]:
                    flow[-1] = False
                    pairs -= 1
            elif c in "?:" and (after in ("", " ", "\t") or flow and (
                    after in ",[]{}" or c == ":" and quoted)):
                if flow and flow[-1] is False:
                    flow[-1] = True
                    pairs += 1
            elif c in "\"'" and start:
                m = _STRINGS[c].match(line, i - 1)
                if m is None:  # a quoted scalar over several lines: not followed
                    return _unsure(lines, n, len(flow) + pairs, block, best, line[i - 1:])
                if not flow and line[m.end():].lstrip(" \t")[:1] == ":":
                    owner = i - 1  # a quoted key
                i = m.end()
                start, quoted = False, True
                continue
            elif c in "|>" and start and not flow and owner is not None \
                    and _BLOCK_SCALAR.match(line, i - 1):
                skip_over = owner
                break
            elif c in "!&*%@`|>" and start:  # tags, anchors, aliases, reserved: not followed
                return _unsure(lines, n, len(flow) + pairs, block, best, line[i - 1:])
            else:  # a plain scalar; in block context it may be a key (`key: value`)
                m = (_FLOW_PLAIN_END if flow else _BLOCK_PLAIN_END).search(line, i)
                if m is None:
                    break
                if not flow and line[m.start()] == ":":
                    owner = i - 1  # the key's column owns a block scalar after it
                i = m.start()
                start = quoted = False
                continue
            start, quoted = True, False
            if len(flow) + pairs > deepest[0]:
                deepest = (len(flow) + pairs, n)
                if deepest[0] + block > best[0]:
                    best = (deepest[0] + block, n)
    return Nesting(best[0], best[1], deepest[0], deepest[1], True)


def _unsure(lines: list[str], n: int, depth: int, block: int, best: tuple[int, int],
            rest_of_line: str = "") -> Nesting:
    """From line n on: every bracket counts as an open one (a `[` twice: it may hold
    pairs), every line as block nesting."""
    later = rest_of_line + "\n" + "\n".join(lines[n + 1:])
    opens = 2 * later.count("[") + later.count("{")
    widest = max((_PREFIX.match(line).end() for line in lines[n:]), default=0)
    bound = max(best[0], depth + opens + max(block, 2 * (widest + 1)))
    return Nesting(bound, n, 0, 0, False)


def check_text(path: Path, text: str, first: int) -> None:
    """Refuse `text` (YAML whose first line is line `first` of `path`) when it nests
    deeper than MAX_DEPTH, before any parser recurses into it."""
    if _crude_bound(text) <= MAX_DEPTH:
        return  # most files: no need for the pass below (about a quarter of a parse)
    nesting = nesting_bound(text)
    if nesting.bound <= MAX_DEPTH:
        return
    if nesting.flow > MAX_DEPTH:  # the costly case for ruamel, and certain here
        line = nesting.flow_line
    else:  # maybe wide indentation, maybe a construct the screen does not follow
        found = _event_depth(text)
        if found is None:
            return
        line = found
    raise BadFile(path, f"lists and mappings nest deeper than {MAX_DEPTH} levels", line + first,
                  "flatten the structure")


def _crude_bound(text: str) -> int:
    """The bound nesting_bound falls back to when it follows nothing of the text: every
    `[` two levels (it may hold a pair, a mapping of its own), every `{` one, plus the
    block bound of the widest line prefix (indentation, `- `, `? `, `: `)."""
    widest = max((_PREFIX.match(line).end() for line in text.splitlines()), default=0)
    return 2 * text.count("[") + text.count("{") + 2 * (widest + 1)


def _event_depth(text: str) -> int | None:
    """The 0-based line where ruamel's events first nest past MAX_DEPTH, else None."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent

    depth = 0
    try:
        for event in YAML(typ="rt").parse(io.StringIO(text)):
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return event.start_mark.line if event.start_mark else 0
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
    except (YAMLError, RecursionError):
        return None  # the load reports the syntax error with its line
    return None


def check_loaded(path: Path, data: object, first: int) -> None:
    """Refuse what a load gave that no consumer can use (see the module docstring).

    A text with `\\ud83d\\ude00` (how JSON writers escape one character past U+FFFF)
    holds a surrogate pair, which ruamel leaves as two code points: it is put together
    here, in place, so that printing or encoding it works."""
    stack: list[tuple[object, int, int | None]] = [(data, 1, None)]
    while stack:
        node, depth, line = stack.pop()
        here = _line(node, first) or line
        if depth > MAX_DEPTH:
            raise BadFile(path, f"lists and mappings nest deeper than {MAX_DEPTH} levels",
                          here, "flatten the structure")
        if isinstance(node, dict):
            for key, value in list(node.items()):
                at = _key_line(node, key, first) or here
                if not (key is None or isinstance(key, (str, int, float, date))):
                    raise BadFile(path, "a key is a list or a mapping (`? ` complex keys and "
                                  "`[a]: b` are not allowed)", at, "use a plain text as the key")
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise _lone_surrogate(path, at)
                if isinstance(value, (dict, list)):
                    stack.append((value, depth + 1, at))
                else:
                    fixed = _check_scalar(path, value, at)
                    if fixed is not value:
                        node[key] = fixed
        elif isinstance(node, list):
            for i, value in enumerate(node):
                at = _item_line(node, i, first) or here
                if isinstance(value, (dict, list)):
                    stack.append((value, depth + 1, at))
                else:
                    fixed = _check_scalar(path, value, at)
                    if fixed is not value:
                        node[i] = fixed


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(path: Path, line: int | None) -> BadFile:
    return BadFile(path, "a text holds an escaped lone surrogate (like \\ud800), which no "
                   "file, terminal or process can take", line,
                   "write the character itself, or \\U and 8 digits for one past U+FFFF")


def _check_scalar(path: Path, value: object, line: int | None) -> object:
    """The value, or its fixed copy (surrogate pairs put together); raises BadFile."""
    if isinstance(value, str):
        if not _SURROGATE.search(value):  # the usual case: one regex search
            return value
        try:
            whole = value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeError:
            raise _lone_surrogate(path, line) from None
        return type(value)(whole) if type(value) is not str else whole
    return value


def _line(node: object, first: int) -> int | None:
    try:
        return node.lc.line + first  # type: ignore[attr-defined]
    except AttributeError:
        return None


def _key_line(node: object, key: object, first: int) -> int | None:
    try:
        return node.lc.key(key)[0] + first  # type: ignore[attr-defined]
    except (AttributeError, KeyError, TypeError):
        return None


def _item_line(node: object, index: int, first: int) -> int | None:
    try:
        return node.lc.item(index)[0] + first  # type: ignore[attr-defined]
    except (AttributeError, KeyError, TypeError, IndexError):
        return None

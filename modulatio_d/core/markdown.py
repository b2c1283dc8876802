"""A Markdown file with YAML frontmatter, read fully and changed surgically.

The file is split exactly: `opening` (the first `---` line), `head` (the YAML),
`closing` (the `---` or `...` line) and `body`; joined they are the file, byte
for byte. The head is read with libyaml and YAML 1.2 meanings (core/fastyaml;
ruamel's round trip for what fastyaml leaves to it), values carrying their line
numbers, and wrapped in a python-frontmatter Post.

Writes never re-serialize what people wrote. `set_keys` rewrites only the
lines of the top-level keys it is given: a one-line scalar keeps its quoting
and its trailing comment; any other value is replaced whole, in a format this
module owns (flow maps, one list item per line). Keys are found by a line
scanner (a top-level key starts at column 0); `load` refuses a head whose keys
the scanner and ruamel do not agree on, so every loaded file can be spliced.
Comment lines at column 0 belong to the key below them and are kept.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import frontmatter

from modulatio_d.core import fastyaml, limits, roundtrip
from modulatio_d.core.errors import BadFile, FileFault
from modulatio_d.core.yaml_text import flow, render_key, render_scalar

DELETE = object()  # a value for set_keys that removes the key


class Append(list):
    """A value for set_keys: the whole new list, of which the file holds `value[:start]`.

    Only for a list the writer knows is exactly what the file holds (the daemon's
    own reflection_log, when the file is the one it last wrote): when the file
    writes it as a block list, the existing lines stay untouched and only the
    new items are added, so a step costs one new line, not a re-render. Any
    other form (a flow list, items behind a comment) is rendered whole.
    `drop`: the file's first items to remove (they moved out of the plan: the window
    of store/reflections.py); the new list is the file's items from `drop` on, then
    `items[start:]`.
    """

    def __init__(self, items: list, start: int, drop: int = 0):
        super().__init__(items)
        self.start = start
        self.drop = drop


def _item_line(lines: list[str], a: int, b: int, indent: str, n: int) -> int | None:
    """The line (in lines[a:b]) where item `n` of a block list at `indent` starts; `b`
    when it has exactly `n` items; None when fewer. `a` itself for none to skip."""
    if n == 0:
        return a
    seen = 0
    for i in range(a, b):
        m = _ITEM.match(lines[i])
        if m and m.group(1) == indent:
            if seen == n:
                return i
            seen += 1
    return b if seen == n else None


_ITEM = re.compile(r"([ \t]*)-(?:[ \t]|\r?\n|$)")


def _block_list_indent(span: list[str]) -> str | None:
    """The indent of the items when `span` is `key:` and a block list, else None."""
    m = _KEY.match(span[0])
    if not m or span[0][m.end():].strip().split("#")[0].strip():
        return None  # the key's line holds a value: a flow list or a scalar
    first = next((line for line in span[1:] if line.strip()), "")
    item = _ITEM.match(first)
    return item.group(1) if item else None  # a comment first: its indent says nothing

_FENCE = re.compile(r"-{3}[ \t]*(\r?\n|$)")
_CLOSE = re.compile(r"(?m)^(?:-{3}|\.{3})[ \t]*(?:\r?\n|$)")
_KEY = re.compile(
    r"""(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*|"(?:[^"\\\n]|\\.)*"|'(?:[^'\n]|'')*')"""
    r"""[ \t]*:(?=[ \t\r\n]|$)"""
)
_SEQ_ITEM = re.compile(r"-(?:[ \t]|\r?\n|$)")  # `- item` at column 0: an indentless list


class _RoundTripHandler(frontmatter.default_handlers.BaseHandler):
    """python-frontmatter's handler shell around our exact split and ruamel load.

    format() returns the document's own text: nothing is stripped or re-dumped.
    """

    FM_BOUNDARY = _CLOSE

    def format(self, post: frontmatter.Post, **kwargs: object) -> str:
        return post.document.text  # type: ignore[attr-defined]


HANDLER = _RoundTripHandler()


_yaml = roundtrip.yaml


@dataclass(frozen=True)
class Document:
    path: Path
    opening: str
    head: str
    closing: str
    body: str
    data: dict  # fastyaml.Map (or ruamel's CommentedMap): `.lc` gives lines

    @property
    def text(self) -> str:
        return self.opening + self.head + self.closing + self.body

    @property
    def head_line(self) -> int:
        """1-based file line of the head's first line."""
        return self.opening.count("\n") + 1

    def line_of(self, key: str) -> int | None:
        return line_of(self.data, key, self.head_line)

    def fault(self) -> FileFault:
        """`fail(reason, key, hint)` for this file; without a key's line, the head's first."""
        return FileFault(self.path, self.line_of, fallback=self.head_line)

    def line_of_item(self, seq: object, index: int) -> int | None:
        try:
            return seq.lc.item(index)[0] + self.head_line  # type: ignore[attr-defined]
        except (AttributeError, KeyError, TypeError, IndexError):
            return None

    @property
    def post(self) -> frontmatter.Post:
        post = frontmatter.Post(self.body, handler=HANDLER)
        post.metadata = self.data  # keep ruamel's map: comments, order, line numbers
        post.document = self  # type: ignore[attr-defined]
        return post


def split(path: Path, text: str) -> tuple[str, str, str, str]:
    """(opening, head, closing, body); raises BadFile when there is no frontmatter."""
    start = 1 if text.startswith("\ufeff") else 0
    m = _FENCE.match(text, start)
    if not m:
        raise BadFile(path, "no frontmatter: the file must start with a line '---'", 1,
                      "add a '---' line, the YAML keys, and a closing '---' line")
    opening_end = m.end()
    c = _close(text, opening_end)
    if not c:
        raise BadFile(path, "the frontmatter is not closed", 1,
                      "add a line '---' after the YAML keys")
    return text[:opening_end], text[opening_end:c[0]], text[c[0]:c[1]], text[c[1]:]


_CLOSE_REST = re.compile(r"[ \t]*(?:\r?\n|$)", re.M)


def _close(text: str, pos: int) -> tuple[int, int] | None:
    """(start, end) of the first closing line at or after `pos` (what _CLOSE.search finds):
    str.find for the fences, not a regex tried at every position (16 ms a read on the
    1.3 MB plan of a 5,000-step run; this is linear in C)."""
    found = []
    for fence in ("---", "..."):
        at = pos
        while True:
            if text.startswith(fence, at) and (at == 0 or text[at - 1] == "\n"):
                i = at
            else:
                i = text.find("\n" + fence, at) + 1
                if i == 0:
                    break
            rest = _CLOSE_REST.match(text, i + 3)
            if rest:
                found.append((i, rest.end()))
                break
            at = i + 1
    return min(found) if found else None


def load(path: Path, text: str) -> Document:
    opening, head, closing, body = split(path, text)
    first = opening.count("\n") + 1
    data = load_mapping(path, head, first)
    scanned = [k for k, _, _ in _key_spans(head.splitlines(keepends=True))]
    if scanned != [str(k) for k in data]:
        raise BadFile(path, "the frontmatter must be a block mapping with one plain key "
                      "per line starting at column 0", first)
    return Document(path, opening, head, closing, body, data)


def load_mapping(path: Path, yaml_text: str, first: int = 1) -> dict:
    """A YAML mapping whose first line is line `first` of `path`: dicts and lists with
    ruamel's `.lc` line numbers, values as ruamel reads YAML 1.2.

    libyaml reads it (core/fastyaml: 10-20x faster than ruamel's round trip); what
    fastyaml does not decide like ruamel (or libyaml refuses), ruamel reads, so the
    texts accepted and their values are ruamel's, and so are the messages.
    Whatever the text, the only error is a BadFile: nesting past limits.MAX_DEPTH is
    refused before a parser recurses into it.
    """
    limits.check_text(path, yaml_text, first)
    _refuse_aliases(path, yaml_text, first)
    try:
        data = fastyaml.load(yaml_text)
    except (fastyaml.YAMLError, fastyaml.Unsure, ValueError, OverflowError, TypeError,
            RecursionError):  # (UnicodeError, a lone surrogate from bytes, is a ValueError)
        # libyaml refuses a few texts ruamel reads (`"\ud83d\ude00"`, how JSON writes
        # one character): ruamel decides every text fastyaml does not.
        return _load_round_trip(path, yaml_text, first)
    _check_mapping(path, data, first)
    return data  # type: ignore[return-value]


def _check_mapping(path: Path, data: object, first: int) -> None:
    if not isinstance(data, dict):
        kind = ("empty" if data is None else "a list" if isinstance(data, list)
                else "a single value")  # not ruamel's class name (CommentedSeq)
        raise BadFile(path, f"the YAML is {kind}, not a mapping of keys", first,
                      "write 'key: value' lines")
    limits.check_loaded(path, data, first)


def _load_round_trip(path: Path, yaml_text: str, first: int) -> dict:
    data = roundtrip.load(path, yaml_text, first)
    _check_mapping(path, data, first)
    return data  # type: ignore[return-value]


def line_of(data: dict, key: str, first: int = 1) -> int | None:
    try:
        return data.lc.key(key)[0] + first  # type: ignore[attr-defined]
    except (AttributeError, KeyError, TypeError):
        return None


def _refuse_aliases(path: Path, head: str, first: int) -> None:
    # A few hundred bytes of nested aliases expand to millions of nodes; only
    # files with '&' or '*' in them pay for the event pass (libyaml's, in C; ruamel's
    # when libyaml cannot parse the text, since ruamel will then load it).
    if "&" not in head and "*" not in head:
        return
    try:
        line = fastyaml.anchors(head)
    except (fastyaml.YAMLError, UnicodeError):
        line = roundtrip.anchors(head)
    if line is not None:
        raise BadFile(path, "YAML anchors and aliases are not allowed", line + first,
                      "write the value out in full")


# --- splicing -----------------------------------------------------------------

def _unquote_key(token: str) -> str:
    if token[0] == '"':
        return json.loads(token)
    if token[0] == "'":
        return token[1:-1].replace("''", "'")
    return token


def _key_spans(lines: list[str]) -> list[tuple[str, int, int]]:
    """(key, first line, end line exclusive) of every top-level key.

    Column-0 comments and blank lines at the end of a span belong to the next key.
    """
    starts: list[tuple[str, int]] = []
    # Indented lines and comments first, in one pass: a plan's steps and log are most lines.
    for i in [i for i, line in enumerate(lines) if line[:1] not in " \t#"]:
        line = lines[i]
        if not line.strip() or _SEQ_ITEM.match(line):
            continue  # a value's line: blank, or an item of `key:\n- a\n- b`
        m = _KEY.match(line)
        starts.append((_unquote_key(m.group("key")) if m else "\0", i))
    spans = []
    for n, (key, first) in enumerate(starts):
        end = starts[n + 1][1] if n + 1 < len(starts) else len(lines)
        while end > first + 1 and (not lines[end - 1].strip() or lines[end - 1][0] == "#"):
            end -= 1
        spans.append((key, first, end))
    return spans


def without_keys(doc_text: str, keys: tuple[str, ...] | frozenset[str]) -> str:
    """The text less the lines of the top-level `keys` (what a person wrote, when the keys
    are the daemon's); the whole text when it has no frontmatter. No YAML is parsed."""
    try:
        opening, head, closing, body = split(Path("<text>"), doc_text)
    except BadFile:
        return doc_text
    lines = head.splitlines(keepends=True)
    for key, a, b in reversed(_key_spans(lines)):
        if key in keys:
            del lines[a:b]
    return opening + "".join(lines) + closing + body


def set_keys(doc_text: str, changes: dict[str, object], path: Path | None = None,
             order: tuple[str, ...] = ()) -> str:
    """The same text with only the lines of `changes`' top-level keys rewritten.

    A key not in the text yet is added at the end of the frontmatter; a key of
    `order` goes before the first key present that comes after it in `order`
    (after that key's predecessor's lines, so comments above it stay its own),
    so that keys written in `order` keep that order however often they come
    and go (a plan's `claim`, removed when it ends, comes back in its place).
    """
    opening, head, closing, body = split(path or Path("<text>"), doc_text)
    nl = "\r\n" if opening.endswith("\r\n") else "\n"
    lines = head.splitlines(keepends=True)
    spans = {k: (a, b) for k, a, b in _key_spans(lines)}
    present = sorted((k for k in changes if k in spans), key=lambda k: -spans[k][0])
    for key in present:  # bottom up, so the spans above stay where they were found
        a, b = spans[key]
        value = changes[key]
        if value is DELETE:
            lines[a:b] = []
        elif isinstance(value, Append) \
                and (indent := _block_list_indent(lines[a:b])) is not None \
                and (cut := _item_line(lines, a + 1, b, indent, value.drop)) is not None:
            if not lines[b - 1].endswith("\n"):
                lines[b - 1] += nl
            lines[b:b] = [f"{indent}- {flow(item)}{nl}" for item in value[value.start:]]
            del lines[a + 1:cut]  # the value.drop items that moved out (none: a no-op)
        else:
            lines[a:b] = _replace(lines[a:b], key,
                                  list(value) if isinstance(value, Append) else value, nl)
    rank = {k: n for n, k in enumerate(order)}
    now = None  # _key_spans(lines), kept up to date: scanned once, not once a new key
    for key, value in sorted(((k, v) for k, v in changes.items()
                              if k not in spans and v is not DELETE),
                             key=lambda kv: rank.get(kv[0], -1)):
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += nl
        now = _key_spans(lines) if rank and now is None else now
        # Before the first later key of `order` (after its predecessor's lines; a key not
        # in `order` goes before all of them: the ordered keys stay at the end), else last.
        n = next((n for n, s in enumerate(now or ()) if rank.get(s[0], -1) > rank.get(key, -1)),
                 None)
        at = len(lines) if n is None else now[n - 1][2] if n else now[0][1]  # type: ignore
        new = render_key(key, value, nl)  # one key's lines: its own, then indented items
        lines[at:at] = new
        if now is not None:  # its span, the later ones moved down (at: a span's edge)
            now = [s for s in now if s[1] < at] + [(key, at, at + len(new))] + [
                (k, a + len(new), b + len(new)) for k, a, b in now if a >= at]
    return opening + "".join(lines) + closing + body


def _replace(old: list[str], key: str, value: object, nl: str) -> list[str]:
    line = old[0]
    m = _KEY.match(line)
    assert m, line
    if len(old) == 1 and not isinstance(value, (dict, list)):
        rest = line[m.end():]
        stripped = rest.lstrip(" \t")
        lead = rest[: len(rest) - len(stripped)] or " "
        token_end = _scalar_end(stripped)
        if token_end is not None:
            tail = stripped[token_end:]
            if not tail.endswith("\n"):
                tail = tail.rstrip("\r") + (nl if line.endswith("\n") else "")
            old_token = stripped[:token_end]
            return [m.group(0) + lead + render_scalar(value, quote=old_token[:1]) + tail]
    rendered = render_key(key, value, nl)
    rendered[0] = m.group("key") + rendered[0][len(key):]  # keep the key as it was written
    return rendered


def _scalar_end(value: str) -> int | None:
    """End of a one-line scalar token at the start of `value`, or None if it is not one."""
    if not value.strip() or value[0] in "[{|>&*!%@`":
        return None
    if value[0] == '"':
        i = 1
        while i < len(value):
            if value[i] == "\\":
                i += 2
                continue
            if value[i] == '"':
                return i + 1
            i += 1
        return None
    if value[0] == "'":
        i = 1
        while i < len(value):
            if value[i] == "'":
                if value[i + 1: i + 2] == "'":
                    i += 2
                    continue
                return i + 1
            i += 1
        return None
    m = re.search(r"[ \t]+#|[ \t]*\r?\n|[ \t]+$|$", value)
    return m.start()

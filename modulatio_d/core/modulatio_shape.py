"""Plans in the shape Modulatio (the product this project grew from) writes them.

Such a plan is read as it is and written back in its own vocabulary
(docs/migrating-from-modulatio.md):

- It is recognised by its keys (MARK_KEYS: `project_code`, `status_transitions`, the caps
  `max_tokens`/`max_cost_usd`/`max_wall_clock_min`, `tokens_used`, ...), its status
  words (`done`, `declined`) or, with no `sub_objectives` key, a Sub-objectives
  section in the body. A plan with none of these is this project's own: `read`
  returns None and nothing here applies.
- Sub-objectives come from the body's `## Sub-objectives` / `### Sub-objectives`
  section (any case) when the frontmatter has none: numbered bold items
  `**1. Title** — description` (em dash, en dash, hyphen or colon; the description
  optional; bold allowed inside both), each with the lines below it (nested bullets:
  files, done-when, out of scope) up to the next item. Each item is a text step for
  the `default` agent, handed the item's whole text. The section ends at the next
  `##`/`###` heading.
- Fail closed, as Modulatio does: a line that looks like a numbered bold item
  (`**N.` at the start) but does not parse, or a section with no item, or no
  section at all, is a `body_error`: the plan parses (so a daemon can pause it with
  a ticket rather than refuse the file) but has no step to run.
- Status words: `done` reads as completed, `declined` as aborted; writes go back in
  the file's words (completed -> done, aborted -> declined, and failed -> paused,
  since Modulatio has no failed: retrying either resumes at current_index).
- Every status change written appends `{to, decided_by, decided_at, note}` to
  `status_transitions`, `decided_at` as `+00:00` ISO with microseconds.
- Times the daemon writes into such a file are `+00:00` ISO (the style its writers
  use), not this project's `Z`.
- Budget caps: `max_tokens`, `max_cost_usd`, `max_wall_clock_min` (minutes of wall
  clock since `execution_started_at`, not the sum of attempts). A cap that cannot be
  honoured (not a positive number, or beside a `budget:` key) is refused.

Pure: no I/O, no clock; `now` comes in as an argument.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from modulatio_d.core import checks
from modulatio_d.core.errors import FileFault
from modulatio_d.core.markdown import Append, Document
from modulatio_d.core.times import parse_time
from modulatio_d.core.yaml_text import plain

STATUS_IN = {"done": "completed", "declined": "aborted"}
"""The file's word -> this project's status."""
STATUS_OUT = {"completed": "done", "aborted": "declined", "failed": "paused"}
"""This project's status -> the word written into a Modulatio-shaped file."""
MARK_KEYS = frozenset({"project_code", "status_transitions", "spawned_kickoffs", "max_tokens",
                       "max_cost_usd", "max_wall_clock_min", "tokens_used", "cost_usd_used"})
"""Keys only Modulatio writes (its writers always write project_code)."""
CAPS = ("max_tokens", "max_cost_usd", "max_wall_clock_min")
COUNTERS = ("tokens_used", "cost_usd_used")

_SECTION = re.compile(r"(?im)^[ \t]{0,3}+#{2,3}+[ \t]++sub-objectives[ \t]*+:?[ \t]*+\r?$")
_NEXT_SECTION = re.compile(r"(?m)^[ \t]{0,3}#{2,3}[ \t]+\S")
_LOOKS_LIKE = re.compile(r"[ \t]{0,3}\*\*[ \t]*\d+\.")
# Matched against a line with its trailing blanks stripped, greedy to its end, blanks possessive:
# linear, however many `**` or blanks a long line holds (the title ends at the first `**` a
# separator or the end follows).
_ITEM = re.compile(r"[ \t]{0,3}+\*\*[ \t]*+(\d++)\.[ \t]*+(.+?)\*\*"  # the number, the title
                   r"[ \t]*+(?:([—–:-])[ \t]*+(.*))?")  # a separator and a description
_HEADING = re.compile(r"[ \t]{0,3}#{1,6}[ \t]+(.*)")
_FENCE = re.compile(r"[ \t]{0,3}(```|~~~)")


@dataclass(frozen=True)
class BodyItem:
    number: int
    title: str
    description: str
    text: str
    """The item's whole text: its line and the lines below it, as handed to the agent."""
    line: int
    """1-based line of the item in the file."""


@dataclass(frozen=True)
class Shape:
    """What a Modulatio-shaped plan says beyond this project's model."""

    status_word: str
    """The status as the file writes it (`done`, `declined`, ...)."""
    items: tuple[BodyItem, ...] | None
    """The body's items; None when the frontmatter has `sub_objectives` of its own."""
    body_error: str | None = None
    body_error_line: int | None = None
    title: str | None = None
    """The body's first heading."""
    transitions: tuple[Any, ...] = ()
    tokens_used: int = 0
    cost_usd_used: float = 0.0

    def steps(self) -> list[dict]:
        """The body's items as sub_objectives items (text steps for the default agent)."""
        return [{"title": i.title, "objective": i.text} for i in self.items or ()]

    def after(self, written: dict[str, Any]) -> Shape:
        """This shape once `written` (values as put into the file) is in the file."""
        changes: dict[str, Any] = {}
        if isinstance(written.get("status"), str):
            changes["status_word"] = written["status"]
        if isinstance(written.get("status_transitions"), list):
            changes["transitions"] = tuple(written["status_transitions"])
        for key in COUNTERS:
            if key in written:
                changes[key] = written[key]
        return replace(self, **changes)


def is_modulatio(data: dict, body: str) -> bool:
    status = data.get("status")
    if any(k in data for k in MARK_KEYS) or (isinstance(status, str) and status in STATUS_IN):
        return True
    return "sub_objectives" not in data and _SECTION.search(body) is not None


def read(doc: Document, fail: FileFault) -> Shape | None:
    """The Modulatio part of a plan, or None for a plan of this project's own shape.

    Raises (through `fail`) only for what must be refused: caps and counters of the
    wrong type. A body that does not parse is a Shape with `body_error` (fail closed).
    """
    data = doc.data
    if not is_modulatio(data, doc.body):
        return None
    first = doc.text.count("\n", 0, len(doc.text) - len(doc.body)) + 1  # the body's line
    items: tuple[BodyItem, ...] | None = None
    error = error_line = None
    if "sub_objectives" not in data:
        try:
            items = parse_body(doc.body, first)
        except BodyError as e:
            items, error, error_line = (), e.reason, e.line
    word = data.get("status", "draft")
    tokens = _counter(fail, data, "tokens_used", int)
    cost = _counter(fail, data, "cost_usd_used", float)
    transitions = data.get("status_transitions") or []
    if not isinstance(transitions, list):
        fail("status_transitions is not a list", "status_transitions",
             hint="a list of {to, decided_by, decided_at, note} mappings")
    return Shape(status_word=word if isinstance(word, str) else "draft", items=items,
                 body_error=error, body_error_line=error_line, title=first_heading(doc.body),
                 transitions=tuple(plain(transitions)), tokens_used=tokens, cost_usd_used=cost)


def status_of(word: object) -> object:
    """The status this project reads for the file's word (others unchanged)."""
    return STATUS_IN.get(word, word) if isinstance(word, str) else word


class BodyError(ValueError):
    def __init__(self, reason: str, line: int | None):
        super().__init__(reason)
        self.reason, self.line = reason, line


def parse_body(body: str, first_line: int = 1) -> tuple[BodyItem, ...]:
    """The numbered bold items of the body's Sub-objectives section; BodyError when there
    is no section, no item, or a line that looks like an item does not parse."""
    m = _SECTION.search(body)
    if m is None:
        raise BodyError("no sub_objectives and no '## Sub-objectives' section in the body",
                        None)
    start = m.end()
    nxt = _NEXT_SECTION.search(body, start)
    end = nxt.start() if nxt else len(body)
    base = first_line + body.count("\n", 0, start)
    lines = body[start:end].split("\n")
    found: list[tuple[re.Match, int, int]] = []  # (match, line offset, item line number)
    fenced = False
    for n, line in enumerate(lines):
        text = line.rstrip()
        if _FENCE.match(text):
            fenced = not fenced
            continue
        if fenced or not _LOOKS_LIKE.match(text):
            continue
        item = _ITEM.fullmatch(text)
        if item is None or not item.group(2).strip():
            raise BodyError(
                f"Sub-objectives line {text.strip()!r} looks like a numbered item but does "
                "not parse: write '**N. Title** — description' (the plan pauses rather "
                "than run a shorter list)", base + n)
        found.append((item, n, base + n))
    if not found:
        raise BodyError("the Sub-objectives section lists no numbered bold items "
                        "('**1. Title** — description')", base)
    items = []
    for k, (item, n, line_no) in enumerate(found):
        stop = found[k + 1][1] if k + 1 < len(found) else len(lines)
        chunk = "\n".join(x.rstrip("\r") for x in lines[n:stop]).strip()
        title = item.group(2).strip()
        items.append(BodyItem(number=int(item.group(1)), title=title,
                              description=(item.group(4) or "").strip(), text=chunk,
                              line=line_no))
    return tuple(items)


def first_heading(body: str) -> str | None:
    fenced = False
    for line in body.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced and (m := _HEADING.fullmatch(line.rstrip())):
            return m.group(1).rstrip(" \t#") or None  # a closing `##` is no part of it
    return None


def _counter(fail: FileFault, data: dict, key: str, kind: type) -> Any:
    value = data.get(key)
    if value is None:
        return kind(0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value <= checks.MAX_COUNT) or (kind is int and not isinstance(value, int)):
        fail(f"{key} {checks.show(value)} is not a count the daemon can go on from", key,
             hint=f"set {key}: 0 or remove the line")
    return kind(value)


def caps(fail: FileFault, data: dict) -> dict[str, Any] | None:
    """Budget fields (tokens, cost_usd, wall_clock in seconds, since_start) from the
    caps, or None when the file sets none. A cap that cannot be honoured is refused."""
    given = [k for k in CAPS if data.get(k) is not None]
    if not given:
        return None
    if data.get("budget") is not None:
        fail(f"both budget and {', '.join(given)} are set: the daemon cannot honour both",
             given[0], hint="keep one: the caps, or budget: {tokens, cost_usd, wall_clock}")
    out: dict[str, Any] = {}
    for key, field, kind in (("max_tokens", "tokens", int), ("max_cost_usd", "cost_usd", float),
                             ("max_wall_clock_min", "wall_clock", float)):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 < value <= checks.MAX_COUNT) or (kind is int and not isinstance(value, int)):
            fail(f"{key} {checks.show(value)} cannot be honoured: it must be a positive "
                 f"{'whole number' if kind is int else 'number'}", key,
                 hint=f"fix {key} or remove the line (no cap)")
        out[field] = kind(value) * (60 if key == "max_wall_clock_min" else 1)
    if "wall_clock" in out:
        out["since_start"] = True
    return out


def time_text(value: datetime) -> str:
    """A time as Modulatio's writers put it: UTC, `+00:00`, microseconds."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _restyle(value: Any, key: str = "") -> Any:
    if isinstance(value, datetime):
        return time_text(value)
    if key.endswith("_at") and isinstance(value, str) and value.endswith("Z"):
        when = parse_time(value)  # a time the daemon wrote as text (a log entry's started_at)
        return time_text(when) if when is not None else value
    if isinstance(value, Append):
        return Append([_restyle(v) for v in value], value.start, value.drop)
    if isinstance(value, list):
        return [_restyle(v) for v in value]
    if isinstance(value, dict):
        return {k: _restyle(v, str(k)) for k, v in value.items()}
    return value


def file_values(shape: Shape | None, values: dict[str, Any], now: datetime, by: str,
                note: str | None = None) -> dict[str, Any]:
    """`values` (this project's words and times) as written into the file of `shape`:
    status in the file's words with a status_transitions entry when it changes, times in
    `+00:00`. Unchanged for a plan of this project's own shape."""
    if shape is None:
        return values
    out = {k: _restyle(v) for k, v in values.items()}
    status = values.get("status")
    if isinstance(status, str):
        word = STATUS_OUT.get(status, status)
        out["status"] = word
        if word != shape.status_word:
            if status == "failed" and not note:
                note = "failed"
            elif status == "failed":
                note = f"failed: {note}"
            entry = {"to": word, "decided_by": by, "decided_at": time_text(now),
                     "note": note}
            old = list(shape.transitions)
            out["status_transitions"] = Append([*old, entry], start=len(old))
    return out


def describe_entry(entry: dict) -> str:
    """One line for `plan show` of a reflection entry Modulatio wrote (its own shape:
    outcome, after_index, rationale, ...)."""
    parts = []
    if entry.get("after_index") is not None:
        parts.append(f"after step {entry['after_index']}")
    parts.append(str(entry.get("outcome") or entry.get("verdict") or entry.get("decision")
                     or "?"))
    why = entry.get("rationale") or entry.get("reason") or entry.get("summary")
    if why:
        parts.append(f"- {' '.join(str(why).split())}")
    return " ".join(parts)

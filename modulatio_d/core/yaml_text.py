"""Values as the YAML text the daemon writes into a frontmatter (plain scalars where
safe, double quotes with escapes elsewhere, flow maps and lists, times as UTC), and
ruamel's loaded values back as plain Python values."""

from __future__ import annotations

import json
import re
from datetime import datetime

from modulatio_d.core.times import format_time, parse_time

_PLAIN_SAFE = re.compile(r"[A-Za-z_][A-Za-z0-9_./+\-]*(?: [A-Za-z0-9_./+\-]+)*")
_RESERVED = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", "~"}


def render_key(key: str, value: object, nl: str) -> list[str]:
    if isinstance(value, list) and value:
        return [f"{key}:{nl}"] + [f"  - {flow(item)}{nl}" for item in value]
    if isinstance(value, (dict, list)):
        return [f"{key}: {flow(value)}{nl}"]
    return [f"{key}: {render_scalar(value)}{nl}"]


def flow(value: object) -> str:
    if isinstance(value, dict):
        pairs = (f"{render_scalar(str(k))}: {flow(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, datetime):
        return json.dumps(time_text(value))
    return render_scalar(value)


def time_text(value: datetime) -> str:
    """The daemon's UTC text; a time UTC cannot hold (year 1 at +01:00, a person's
    value copied into a kickoff) as it was written."""
    try:
        return format_time(value)
    except (OverflowError, ValueError):
        return value.isoformat()


def render_scalar(value: object, quote: str = "") -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        return time_text(value)
    text = str(value)
    if quote == "'" and "'" not in text and text.isprintable():
        return f"'{text}'"
    if quote != '"' and _PLAIN_SAFE.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    return _double_quoted(text)


_SURROGATES = re.compile("[\ud800-\udfff]")


def _double_quoted(text: str) -> str:
    # A lone surrogate (from a reflector's JSON, say) would be refused on the next read.
    out = json.dumps(_SURROGATES.sub("\ufffd", text), ensure_ascii=False)
    if out.isprintable():
        return out  # the common case: nothing below to escape, no character looked at
    # JSON leaves some line and paragraph separators raw; YAML would break on them.
    # Past U+FFFF (emoji tag characters, say) YAML's escape is \U and 8 digits.
    return "".join(c if c.isprintable() or c in "\"\\" else
                   f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}" for c in out)


def plain(value: object) -> object:
    """ruamel's commented containers and scalars as plain Python values (times aware)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, datetime):
        return parse_time(value)
    return str(value)

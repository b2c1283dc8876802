"""The cheap look at one top-level key of a frontmatter file: a regex, no YAML parser.

What a scan, a status listing or a ticket look uses to decide whether a file needs the
full parse at all (a few microseconds a file against milliseconds for the parse).
"""

from __future__ import annotations

import re

_PEEK_COLON = re.compile(r"[ \t]*:")
_PEEK_VALUE = re.compile(r"""[ \t]*(?:"(\w+)"|'(\w+)'|(\w+))(?:[ \t]+#.*)?[ \t]*\r?$""", re.M)
CANNOT_TELL = "?"
"""What `peek` says of a key that is there but whose value a regex cannot read."""


def peek(text: str, key: str) -> str | None:
    """A top-level key's one-word value, found without parsing (a few us a file): the
    cheap look that decides whether a full parse is needed.

    None when the key is not in the frontmatter. CANNOT_TELL when it is but the look
    cannot read its value: not one word on the key's own line (a block scalar `>-`, a
    value on the next line, a tag), the key quoted, or its line there twice (once
    inside a text over several lines, say). A caller that needs the value parses then.
    """
    end = text.find("\n---", 3)
    end = end if end >= 0 else len(text)
    found = None
    needle = "\n" + key
    i = text.find(needle, 0, end)
    while i >= 0:
        colon = _PEEK_COLON.match(text, i + len(needle), end)
        if colon is not None:
            if found is not None:
                return CANNOT_TELL
            found = colon.end()
        i = text.find(needle, i + len(needle), end)
    if found is None:
        quoted = any(text.find(f"\n{q}{key}{q}", 0, end) >= 0 for q in "\"'")
        return CANNOT_TELL if quoted else None
    v = _PEEK_VALUE.match(text, found, end)
    return v[v.lastindex] if v else CANNOT_TELL  # the one of the three groups that matched


def peek_status(text: str) -> str | None:
    return peek(text, "status")

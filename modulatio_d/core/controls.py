"""Text from the vault made safe to show on a terminal or in a line-based log.

Titles, summaries, step output, ticket reasons and file names come from files
anyone who writes the vault chose. Printed raw, they could drive the reader's
terminal (an OSC sequence retitles the window, `ESC [2J` clears the screen,
colours fake a status), start a new line of output or of a text log (a
newline in a step title forging `INFO fake log line`), or reorder what is
shown (bidi overrides). `neutralise` shows each such character escaped
instead, the way Python's repr would (`\\x1b`, `\\n`, `\\u202e`), and keeps
everything else, backslashes included, as it is. Escaping ESC is enough to
defuse every escape sequence: what follows it is printable text.

Escaped: C0 controls (U+0000-U+001F, tab and newline too), DEL, C1 controls
(U+0080-U+009F, which some terminals obey as 8-bit escapes), the line and
paragraph separators, the bidi marks, embeddings, overrides and isolates, and
lone surrogates (which cannot even be encoded, so printing one would fail).
JSON output is never passed through here: json.dumps escapes what it must
and keeps the text exact.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise(text: str) -> str:
    """`text` with every control, bidi and surrogate character shown escaped."""
    if _UNSAFE.search(text) is None:  # the common case costs one scan
        return text
    return _UNSAFE.sub(_escape, text)


def neutralise_lines(text: str) -> str:
    """Each line of a multi-line text made safe; the line breaks themselves are kept."""
    return "\n".join(neutralise(line) for line in text.split("\n"))

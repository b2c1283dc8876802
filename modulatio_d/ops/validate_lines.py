"""Where a key is in a YAML text, for `validate`'s messages (each names its line), and
whether a reflector command depends on the folder it runs in."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from modulatio_d.store import fs


def text_of(path: Path) -> str:
    try:
        return fs.read(path, "config").raw.decode("utf-8", "replace")
    except OSError:
        return ""


def key_line(text: str, key: str) -> int | None:
    """The line of a top-level `key:` in YAML text (the whole file's, frontmatter or not)."""
    m = re.search(rf"(?m)^{re.escape(key)}[ \t]*:", text)
    return text.count("\n", 0, m.start()) + 1 if m else None


def agent_line(text: str, name: str) -> int | None:
    """The line of agent `name` under the config's `agents:`."""
    start = re.search(r"(?m)^agents[ \t]*:", text)
    if not start:
        return None
    m = re.compile(rf"(?m)^[ \t]+['\"]?{re.escape(name)}['\"]?[ \t]*:").search(text, start.end())
    return text.count("\n", 0, m.start()) + 1 if m else key_line(text, "agents")


def is_plain(command: str) -> bool:
    """A reflector that does not depend on the folder it runs in."""
    try:
        first = shlex.split(command)[0] if not command.startswith("plugin:") else ""
    except (ValueError, IndexError):
        return True
    return "/" not in first or os.path.isabs(first)

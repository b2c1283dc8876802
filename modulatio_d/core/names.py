"""Names that become parts of paths: project codes, plan, cron and ticket ids.

A valid name is letters, digits, `_`, `-` and `.`, starting with a letter, digit
or `_` (not a dot, not a dash that a command line would take for an option), so
it can never climb out of its folder or hide itself.
"""

from __future__ import annotations

import re

from modulatio_d.core.errors import InvalidName

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def is_valid(name: object) -> bool:
    return isinstance(name, str) and len(name) <= 200 and _NAME.fullmatch(name) is not None


def check(what: str, name: str) -> str:
    if not is_valid(name):
        raise InvalidName(what, str(name))
    return name

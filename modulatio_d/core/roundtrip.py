"""ruamel.yaml's round trip: the reference reader of YAML 1.2 for core/markdown.

core/fastyaml reads almost every frontmatter; what it leaves undecided (and what
libyaml refuses) is read here, with ruamel's values and messages. ruamel is
imported on first use, so commands that never meet such a text do not pay for it.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from modulatio_d.core import limits
from modulatio_d.core.errors import BadFile


def yaml():  # noqa: ANN201 (ruamel is imported only when a text needs it)
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1 << 20
    return y


def load(path: Path, yaml_text: str, first: int) -> object:
    """ruamel's round-trip load (the reference reader of YAML 1.2); BadFile on any error."""
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        data = yaml().load(yaml_text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + first if mark else None
        problem = (e.problem or e.context or "invalid YAML").strip()
        raise BadFile(path, f"invalid YAML: {problem}", line) from None
    except YAMLError as e:
        raise BadFile(path, f"invalid YAML: {str(e).splitlines()[0]}", None) from None
    except (ValueError, OverflowError) as e:  # ruamel builds 2025-13-01 and fails on it
        raise BadFile(path, f"invalid YAML: {e}", _bad_date_line(yaml_text, first),
                      "check the dates and times: YYYY-MM-DD[THH:MM:SS+HH:MM]") from None
    except TypeError as e:  # `? ` followed by a mapping: a key that cannot be a key
        raise BadFile(path, f"invalid YAML: a key is a list or a mapping ({e})",
                      _complex_key_line(yaml_text, first),
                      "`? ` complex keys are not allowed: use a plain text as the key") from None
    except RecursionError:  # a belt: limits.check_text refuses such nesting first
        raise BadFile(path, f"lists and mappings nest deeper than {limits.MAX_DEPTH} levels",
                      None, "flatten the structure") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 (ruamel on odd text: the text's fault, said so)
        raise BadFile(path, f"invalid YAML: {type(e).__name__}: {e}", None) from None
    return data


def _complex_key_line(yaml_text: str, first: int) -> int | None:
    m = re.search(r"(?m)^[ \t-]*\?(?:[ \t]|$)", yaml_text)
    return yaml_text.count("\n", 0, m.start()) + first if m else None


def _bad_date_line(yaml_text: str, first: int) -> int | None:
    for number, line in enumerate(yaml_text.splitlines()):
        for m in re.finditer(r"(?<![\d.])(\d{4})-(\d\d?)-(\d\d?)(?!\d)", line):
            try:
                datetime(*map(int, m.groups()))
            except ValueError:
                return number + first
    return None


def anchors(head: str) -> int | None:
    """The 0-based line of the first anchor or alias in ruamel's events, None when none
    (or when ruamel cannot parse the text: its load then says why)."""
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.events import AliasEvent, NodeEvent

    try:
        for event in yaml().parse(head):
            if isinstance(event, AliasEvent) or (
                isinstance(event, NodeEvent) and event.anchor is not None
            ):
                return event.start_mark.line if event.start_mark else 0
    except YAMLError:
        return None  # the full load reports the syntax error with its line
    return None

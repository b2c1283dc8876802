"""A strict parser of the Prometheus text exposition format 0.0.4, written here from
the format's description (no dependency), for the `modulatio metrics` tests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class FormatError(AssertionError):
    pass


@dataclass
class Fam:
    name: str
    type: str | None = None
    help: str | None = None
    samples: dict[tuple, float] = field(default_factory=dict)


def _unescape(text: str, allowed: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            nxt = text[i + 1: i + 2]
            if nxt not in allowed:
                raise FormatError(f"bad escape \\{nxt} in {text!r}")
            out.append({"n": "\n"}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _labels(text: str, pos: int, line: str) -> tuple[dict[str, str], int]:
    """Parse `{a="x",b="y"}` starting at text[pos] == '{'; (labels, position after '}')."""
    labels: dict[str, str] = {}
    pos += 1
    while True:
        if text[pos] == "}":
            return labels, pos + 1
        m = LABEL.match(text, pos)
        if not m or text[m.end(): m.end() + 2] != '="':
            raise FormatError(f"bad label at {pos}: {line!r}")
        name, pos = m.group(0), m.end() + 2
        start = pos
        while text[pos] != '"':
            if text[pos] == "\n":
                raise FormatError(f"raw newline in a label value: {line!r}")
            pos += 2 if text[pos] == "\\" else 1
        if name in labels:
            raise FormatError(f"label {name} twice: {line!r}")
        labels[name] = _unescape(text[start:pos], '\\"n')
        pos += 1
        if text[pos] == ",":
            pos += 1
        elif text[pos] != "}":
            raise FormatError(f"expected , or }} at {pos}: {line!r}")


def _value(token: str, line: str) -> float:
    if token in ("NaN", "+Inf", "-Inf"):
        return float(token.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", token):
        raise FormatError(f"bad value {token!r}: {line!r}")
    return float(token)


def parse(text: str) -> dict[str, Fam]:
    """The families of an exposition; raises FormatError on anything out of format."""
    if text and not text.endswith("\n"):
        raise FormatError("the last line must end with a newline")
    fams: dict[str, Fam] = {}
    closed: set[str] = set()
    current: str | None = None

    def family(name: str) -> Fam:
        nonlocal current
        if name != current:
            if name in closed:
                raise FormatError(f"{name} appears in two separate groups")
            if current is not None:
                closed.add(current)
            current = name
        return fams.setdefault(name, Fam(name))

    for line in text.split("\n")[:-1]:
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.fullmatch(name):
                    raise FormatError(f"bad metric name {name!r}")
                f = family(name)
                rest = parts[3] if len(parts) > 3 else ""
                if parts[1] == "HELP":
                    if f.help is not None:
                        raise FormatError(f"second HELP for {name}")
                    f.help = _unescape(rest, "\\n")
                else:
                    if f.type is not None or f.samples:
                        raise FormatError(f"TYPE for {name} twice or after its samples")
                    if rest not in TYPES:
                        raise FormatError(f"unknown type {rest!r}")
                    f.type = rest
            continue
        m = NAME.match(line)
        if not m:
            raise FormatError(f"bad sample line {line!r}")
        name, pos = m.group(0), m.end()
        labels: dict[str, str] = {}
        if line[pos: pos + 1] == "{":
            try:
                labels, pos = _labels(line, pos, line)
            except IndexError:
                raise FormatError(f"unterminated labels: {line!r}") from None
        tokens = line[pos:].split()
        if line[pos: pos + 1] != " " or not 1 <= len(tokens) <= 2:
            raise FormatError(f"expected ' value [timestamp]': {line!r}")
        value = _value(tokens[0], line)
        if len(tokens) == 2 and not re.fullmatch(r"-?\d+", tokens[1]):
            raise FormatError(f"bad timestamp: {line!r}")
        f = family(name)
        key = tuple(sorted(labels.items()))
        if key in f.samples:
            raise FormatError(f"duplicate series {name}{labels}")
        f.samples[key] = value
    return fams


def sample(fams: dict[str, Fam], name: str, **labels: str) -> float:
    key = tuple(sorted((k, str(v)) for k, v in labels.items()))
    return fams[name].samples[key]

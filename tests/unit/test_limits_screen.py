"""check_text skips the one-pass screen when the bound it falls back to (every bracket
counted, the widest line prefix) is within MAX_DEPTH: it must refuse exactly what the
screen refuses."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from modulatio_d.core import limits
from modulatio_d.core.errors import BadFile

PIECES = ["[", "]", "{", "}", "- ", "? ", ": ", "a", " ", "  ", "\n", "#", '"', "'", "|",
          "x: ", ", ", "\r\n", "\t"]


def screened(text: str) -> str | None:
    """check_text's verdict without the shortcut (as it was)."""
    try:
        real = limits._crude_bound
        limits._crude_bound = lambda text: limits.MAX_DEPTH + 1
        limits.check_text(Path("f"), text, 1)
        return None
    except BadFile as e:
        return str(e)
    finally:
        limits._crude_bound = real


@pytest.mark.parametrize("seed", range(2))
def test_the_shortcut_refuses_what_the_screen_refuses(seed):
    rng = random.Random(seed)
    texts = ["a: [" * 40 + "]" * 40, "- " * 40 + "x", "a:\n" + "".join(
        " " * i + f"k{i}:\n" for i in range(0, 140, 2)), "{" * 70 + "}" * 70]
    texts += ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 200)))
              for _ in range(120)]
    texts += ["".join(rng.choice(["[", "{", "- ", "a: ", "\n  "]) for _ in range(80))
              for _ in range(40)]
    for text in texts:
        try:
            limits.check_text(Path("f"), text, 1)
            got = None
        except BadFile as e:
            got = str(e)
        assert got == screened(text), text

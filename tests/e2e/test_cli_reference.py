"""docs/cli.md covers the CLI: every command `modulatio --help` (and each group's
--help) lists has a section headed `modulatio <command>`, and every flag of a
command is named, in backticks, in its section."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modulatio_d.cli import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
HEADING = re.compile(r"^#{2,4} `(modulatio [^`]+)`\s*$", re.MULTILINE)


def sections() -> dict[str, str]:
    """`modulatio plan new` -> the text under that heading, up to the next heading."""
    text = DOC.read_text(encoding="utf-8")
    marks = [(m.group(1), m.end()) for m in HEADING.finditer(text)]
    out = {}
    for name, start in marks:
        nxt = re.compile(r"^#{1,4} ", re.MULTILINE).search(text, start)
        out[name] = text[start: nxt.start() if nxt else len(text)]
    return out


def listed_in_help(*group: str) -> list[str]:
    """The subcommands `modulatio [GROUP] --help` lists, read from its output."""
    out = subprocess.run([sys.executable, "-m", "modulatio_d", *group, "--help"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    block = out.split("positional arguments:", 1)[1].split("\noptions:", 1)[0]
    # argparse lists each choice on its own line, indented by four spaces.
    return re.findall(r"^    (\S+)", block, re.MULTILINE)


def leaf_parsers() -> dict[str, argparse.ArgumentParser]:
    """`modulatio plan new` -> its parser, for every command that runs something."""
    out: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out[path] = parser
        for action in subs:
            for name, child in action.choices.items():
                walk(child, f"{path} {name}")

    walk(build_parser(), "modulatio")
    return out


TOP = listed_in_help()
GROUPS = [name for name in TOP if f"modulatio {name}" not in leaf_parsers()]


def test_help_lists_the_commands_we_expect():
    # A guard for the parsing below: if argparse changes its layout, fail loudly.
    for name in ("init", "validate", "plan", "project", "ticket", "daemon", "heartbeat",
                 "cron", "trigger", "status", "metrics", "ps", "stop", "systemd-unit"):
        assert name in TOP, TOP
    assert set(GROUPS) == {"plan", "project", "ticket", "cron", "import", "hooks", "trigger"}


@pytest.mark.parametrize("command", TOP)
def test_every_top_level_command_has_a_section(command):
    assert f"modulatio {command}" in sections(), f"docs/cli.md lacks `modulatio {command}`"


@pytest.mark.parametrize("group", GROUPS)
def test_every_command_of_each_group_has_a_section(group):
    listed = listed_in_help(group)
    assert listed, f"`modulatio {group} --help` lists no command"
    missing = [c for c in listed if f"modulatio {group} {c}" not in sections()]
    assert not missing, f"docs/cli.md lacks {', '.join(f'modulatio {group} {c}' for c in missing)}"


@pytest.mark.parametrize("command", sorted(leaf_parsers()))
def test_every_flag_is_named_in_its_section(command):
    section = sections().get(command)
    assert section is not None, f"docs/cli.md lacks a section `{command}`"
    # Described once, at the top ("Common to every command").
    common = {"-h", "--help", "--vault", "--version", "--log-level"}
    flags = {s for a in leaf_parsers()[command]._actions for s in a.option_strings} - common
    missing = sorted(f for f in flags if f"`{f}" not in section)
    assert not missing, f"docs/cli.md, `{command}`: flags not named: {missing}"


def test_the_reference_names_no_command_that_does_not_exist():
    known = set(leaf_parsers()) | {f"modulatio {g}" for g in GROUPS}
    stale = [name for name in sections() if name not in known]
    assert not stale, f"docs/cli.md documents commands the CLI lacks: {stale}"

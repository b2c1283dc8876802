"""A command's process builds only the parsers of its group (cli/main.py COMMANDS): the
map must name every command's group, and each command's parser must be the same either
way."""

from __future__ import annotations

import argparse
from importlib import import_module

cli_main = import_module("modulatio_d.cli.main")  # the module (the package exports main())



def test_commands_names_the_group_of_every_command():
    found = {}
    for group in cli_main.GROUPS:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers(dest="command")
        import_module(f"modulatio_d.cli.{group}").register(sub, cli_main.vault_option())
        found.update((name, group) for name in sub.choices)
    assert {k: v for k, v in found.items() if v != "completion"} == cli_main.COMMANDS


def test_each_command_parses_and_helps_the_same_from_its_group_alone():
    whole = cli_main.build_parser()
    full = next(a for a in whole._actions if isinstance(a, argparse._SubParsersAction))
    for word, group in cli_main.COMMANDS.items():
        alone = cli_main.build_parser(group)
        sub = next(a for a in alone._actions if isinstance(a, argparse._SubParsersAction))
        assert sub.choices[word].format_help() == full.choices[word].format_help(), word


def test_the_command_word_comes_after_the_global_options():
    of = cli_main._command_of
    assert of(["--vault", "V", "--json", "--log-level=debug", "status"]) == "status"
    assert of(["--vault=V", "--log-level", "info", "plan", "list"]) == "plan"
    assert of(["--vault"]) is None and of([]) is None
    assert of(["--help"]) == "--help"  # not a command: the whole tree answers


def test_a_word_that_is_no_command_is_told_from_the_whole_tree(run_cli):
    r = run_cli("--vault", "/nowhere", "stauts")
    assert r.code == 2 and "did you mean 'status'?" in r.err

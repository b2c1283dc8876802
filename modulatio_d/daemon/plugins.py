"""Plugins: agents and reflectors other packages install as entry points.

importlib.metadata (and the `email` package it brings) is imported at the first
lookup, not at start-up: 8-25 ms of every daemon's and command's start, needed
only where a plugin is named.
"""

from __future__ import annotations


def target(group: str, name: str) -> str | None:
    """The `module:function` the plugin `name` of entry-point `group` points at; None
    when no installed package offers it."""
    from importlib.metadata import entry_points

    found = entry_points(group=group, name=name)
    return next(iter(found)).value if found else None


def names(group: str) -> set[str]:
    """The names of the plugins installed in entry-point `group`."""
    from importlib.metadata import entry_points

    return {e.name for e in entry_points(group=group)}

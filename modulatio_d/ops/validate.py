"""`modulatio validate`: every plan, cron entry, ticket and the config, checked.

Each kind of file has one reader that raises BadFile; validate runs them all
and collects the problems instead of stopping at the first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modulatio_d.core.errors import BadFile
from modulatio_d.store import config
from modulatio_d.store.plan_file import read_plan
from modulatio_d.store.vault import Vault

Reader = Callable[[Vault, Path], object]


def readers() -> dict[str, Reader]:
    """The reader of each kind of vault file, by folder name."""
    from modulatio_d.store import cron_entries, tickets
    return {"plans": read_plan, "tickets": tickets.read_ticket, "cron": cron_entries.read_entry}


def validate(vault: Vault) -> list[BadFile]:
    problems: list[BadFile] = []
    try:
        config.load(vault.config_path)
    except BadFile as e:
        problems.append(e)
    for name in vault.misnamed_projects():
        problems.append(BadFile(vault.root / name, "folder name is not a valid project code, "
                                "so its plans never run", None,
                                "rename it to letters, digits, '_', '-' and '.'"))
    for project in vault.projects():
        try:
            vault.check_folder(vault.project_dir(project))
        except BadFile as e:  # a project folder linked in: told once, not per kind
            problems.append(e)
            continue
        for kind, reader in readers().items():
            try:
                vault.check_folder(vault.project_dir(project) / kind)
            except BadFile as e:  # a linked folder: none of its files is read
                problems.append(e)
                continue
            for entry in sorted(vault.files(project, kind), key=lambda e: e.name):
                try:
                    reader(vault, Path(entry.path))
                except BadFile as e:
                    problems.append(e)
                except OSError as e:
                    problems.append(BadFile(entry.path, f"cannot be read: {e.strerror}"))
    return problems

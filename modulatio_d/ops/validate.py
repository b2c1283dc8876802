"""`modulatio validate`: every plan, cron entry, ticket and the config, checked.

Each kind of file has one reader that raises BadFile; validate runs them all
and collects the problems instead of stopping at the first. It also lists
what the daemons' trust checks would refuse (store/trust.py): the folders
above the vault, the vault, `.modulatio/`, the config, each project folder
with its plans/, cron/ and tickets/, and every file in them, judged as for a
daemon running as the user who owns the vault folder (the user of the
documented set-ups).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from modulatio_d.core.errors import BadFile
from modulatio_d.store import config, trust
from modulatio_d.store.plan_file import read_plan
from modulatio_d.store.vault import Vault

Reader = Callable[[Vault, Path], object]


def readers() -> dict[str, Reader]:
    """The reader of each kind of vault file, by folder name."""
    from modulatio_d.store import cron_entries, tickets
    return {"plans": read_plan, "tickets": tickets.read_ticket, "cron": cron_entries.read_entry}


def _policy(vault: Vault, group: str | None, problems: list[BadFile]) -> trust.Policy:
    owner = os.stat(vault.root).st_uid
    try:
        return trust.Policy.build(vault.root, group, owner, config_path=vault.config_path)
    except BadFile as e:
        problems.append(e)
        return trust.Policy.build(vault.root, None, owner)


def _judge(policy: trust.Policy, path: Path | str, problems: list[BadFile]) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    problem = policy.problem(path, st)
    if problem is not None:
        problems.append(problem)


def validate(vault: Vault) -> list[BadFile]:
    problems: list[BadFile] = []
    group = None
    try:
        group = config.load(vault.config_path).trusted_group
    except BadFile as e:
        problems.append(e)
    policy = _policy(vault, group, problems)
    problems += trust.check_vault(vault.root, vault.meta, policy)
    _judge(policy, vault.config_path, problems)
    for name in vault.misnamed_projects():
        problems.append(BadFile(vault.root / name, "folder name is not a valid project code, "
                                "so its plans never run", None,
                                "rename it to letters, digits, '_', '-' and '.'"))
    for project in vault.projects():
        _judge(policy, vault.project_dir(project), problems)
        for kind, reader in readers().items():
            _judge(policy, vault.project_dir(project) / kind, problems)
            for entry in sorted(vault.files(project, kind), key=lambda e: e.name):
                _judge(policy, entry.path, problems)
                try:
                    reader(vault, Path(entry.path))
                except BadFile as e:
                    problems.append(e)
                except OSError as e:
                    problems.append(BadFile(entry.path, f"cannot be read: {e.strerror}"))
    return problems

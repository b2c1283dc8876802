"""The doctor's trust check: would a daemon start on this vault (store/trust.py)?

The vault folder, every folder above it, `.modulatio/` and the config, judged
as for a daemon running as the user who owns the vault folder (the user of
the documented set-ups), with the vault's trusted group. A problem here stops
a daemon at start (or makes it refuse the config): unsafe. `validate` judges
every plan, cron entry and ticket the same way.
"""

from __future__ import annotations

import os

from modulatio_d.core.errors import BadFile
from modulatio_d.core.filesystems import Verdict
from modulatio_d.ops.doctor.probe import Probe
from modulatio_d.ops.doctor.report import Row
from modulatio_d.store import config, trust


def check_trust(probe: Probe) -> list[Row]:
    vault = probe.vault
    owner = os.stat(vault.root).st_uid
    try:
        group = config.load(vault.config_path).trusted_group
        policy = trust.Policy.build(vault.root, group, owner, config_path=vault.config_path)
    except BadFile as e:  # validate says what is wrong with the config; judge the rest
        policy = trust.Policy.build(vault.root, None, owner)
        rows = [Row("trust", Verdict.CAVEAT, f"the config is refused: {e}")]
    else:
        rows = []
    problems = trust.check_vault(vault.root, vault.meta, policy)
    try:
        found = policy.problem(vault.config_path, os.stat(vault.config_path))
    except FileNotFoundError:
        found = None
    problems += [found] if found is not None else []
    for p in problems:
        rows.append(Row("trust", Verdict.UNSAFE, f"{p.path}: {p.reason}", p.hint))
    if not problems:
        users = "root" if policy.uid == 0 else f"{trust.user_name(policy.uid)}, root"
        who = f"{users} and group {trust.group_name(policy.gid)}"
        rows.append(Row("trust", Verdict.OK,
                        f"the vault, the folders above it, .modulatio/ and the config may be "
                        f"written only by {who}",
                        data={"user": trust.user_name(policy.uid),
                              "group": trust.group_name(policy.gid)}))
    return rows

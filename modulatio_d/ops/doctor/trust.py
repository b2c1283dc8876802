"""The doctor's trust check: would a daemon start on this vault (store/trust.py)?

The vault folder, every folder above it, `.modulatio/` and the config, judged
as for a daemon running as the user who owns the vault folder (the user of
the documented set-ups), with the vault's trusted group. A problem here stops
a daemon at start (or makes it refuse the config): unsafe. `validate` judges
every plan, cron entry and ticket the same way.
"""

from __future__ import annotations

from modulatio_d.core.filesystems import Verdict
from modulatio_d.ops.doctor.probe import Probe
from modulatio_d.ops.doctor.report import Row
from modulatio_d.store import trust


def check_trust(probe: Probe) -> list[Row]:
    problems = trust.vault_problems(probe.vault, files=False)
    rows = [Row("trust", Verdict.UNSAFE, f"{p.path}: {p.reason}", p.hint) for p in problems]
    if rows:
        return rows
    policy = trust.vault_policy(probe.vault, [])
    users = "root" if policy.uid == 0 else f"{trust.user_name(policy.uid)}, root"
    group = trust.group_name(policy.gid)
    return [Row("trust", Verdict.OK,
                f"the vault, the folders above it, .modulatio/ and the config may be written "
                f"only by {users} and group {group}",
                data={"user": trust.user_name(policy.uid), "group": group})]

"""`modulatio init [--example]`: a new vault, empty or a copy of the shipped example.

`init` makes `.modulatio/config.yaml` naming the mock agent and a `.gitignore`
of the run state (GITIGNORE; an existing .gitignore is kept), and keeps
whatever else the folder holds. `--example` copies the example vault (vault.example_source)
into a new or empty folder without any run state (locks, usage, logs, the
daemon's records, heartbeats, events), so every copy starts fresh. Neither
touches a folder that is already a vault.

`--group NAME` makes the vault a shared one (docs/systemd.md, docs/security.md):
the whole tree gets the group NAME, its folders the setgid bit (so what
anyone creates in them gets that group too), group read and write (g+rwX),
and nothing for others; the config names NAME as `trusted_group`. Links are
left as they are, and so is what they point to.
"""

from __future__ import annotations

import grp
import os
import shutil
import stat
from pathlib import Path

from modulatio_d.core.errors import UsageError
from modulatio_d.store import atomic, fs
from modulatio_d.store.vault import META, Vault, example_source

_RUN_STATE = ("*.lock", "*.usage.jsonl", "*.runs", "events.jsonl", "daemons", "state",
              "__pycache__")

GITIGNORE = """\
# Written by `modulatio init`: the daemons' run state, which git should not keep
# (docs/backup.md). Plans, cron entries, tickets and the config are kept.
*.lock
*.usage.jsonl
*.runs/
.*.tmp
.*.swp
/.modulatio/state/
/.modulatio/daemons/
/.modulatio/events*.jsonl
/.modulatio/retention.lock
/.modulatio/daemon.pid
/.modulatio/daemon.log
/.modulatio/doctor/
"""

_DEFAULT_CONFIG = """\
# modulatio vault configuration (see docs/config.md)
# timezone: Europe/Berlin          # for cron entries without their own
agents:
  default: {use: mock}             # text-only sub-objectives go to this agent
"""


def init(path: Path, example: bool = False, group: str | None = None) -> Vault:
    """A new vault at `path` (made if missing); refuses to touch an existing vault.
    With `group`, shared with that group (see the module's docstring)."""
    path = path.expanduser()
    gid = _group_id(group) if group is not None else None
    if (path / META).exists():
        raise UsageError(
            f"{path} is already a vault (it has {META}/); use it or pick another folder")
    if example:
        if path.exists() and any(path.iterdir()):
            raise UsageError(f"{path} is not empty: give a new or empty folder for the example")
        shutil.copytree(example_source(), path, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*_RUN_STATE))
    else:
        path.mkdir(parents=True, exist_ok=True)  # the folder asked for, as named
        fs.mkdirs(Vault(path).meta)  # modes from the umask: 0o777 and 0o666 masked
        atomic.write_new(Vault(path).config_path, _DEFAULT_CONFIG.encode())
    vault = Vault(path)
    try:
        atomic.write_new(path / ".gitignore", GITIGNORE.encode())
    except FileExistsError:
        pass  # the folder's own: kept as it is
    if group is not None and gid is not None:
        text = atomic.read(vault.config_path, "config").raw.decode("utf-8")
        atomic.replace(vault.config_path, (text + _trusted(group)).encode())
        share(path, gid)
    return vault


def _trusted(group: str) -> str:
    return f"trusted_group: {group}    # whose files the daemon acts on (docs/security.md)\n"


def _group_id(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise UsageError(f"there is no group {group!r} on this host: create it (`groupadd "
                         f"{group}`) and add the people who edit the vault to it") from None


def share(root: Path, gid: int) -> None:
    """chgrp -R gid, folders g+rwxs, files g+rw (g+x where u+x), nothing for others."""
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            _share_one(Path(folder) / name, gid)
    _share_one(root, gid)


def _share_one(path: Path, gid: int) -> None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return  # a link's own mode means nothing; what it points to is not ours to change
    os.chown(path, -1, gid)
    mode = stat.S_IMODE(os.lstat(path).st_mode)  # chown may have cleared setgid bits
    if stat.S_ISDIR(st.st_mode):
        mode |= stat.S_ISGID | 0o070
    else:
        mode |= 0o060 | (0o010 if mode & 0o100 else 0)
    os.chmod(path, mode & ~0o007)

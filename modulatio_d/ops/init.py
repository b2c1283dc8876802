"""`modulatio init [--example]`: a new vault, empty or a copy of the shipped example.

`init` makes `.modulatio/config.yaml` naming the mock agent and keeps whatever
else the folder holds. `--example` copies the example vault (vault.example_source)
into a new or empty folder without any run state (locks, usage, logs, the
daemon's records, heartbeats, events), so every copy starts fresh. Neither
touches a folder that is already a vault.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from modulatio_d.core.errors import UsageError
from modulatio_d.store import atomic, fs
from modulatio_d.store.vault import META, Vault, example_source

_RUN_STATE = ("*.lock", "*.usage.jsonl", "*.runs", "events.jsonl", "daemons", "state",
              "__pycache__")

_DEFAULT_CONFIG = """\
# modulatio vault configuration (see docs/config.md)
# timezone: Europe/Berlin          # for cron entries without their own
agents:
  default: {use: mock}             # text-only sub-objectives go to this agent
"""


def init(path: Path, example: bool = False) -> Vault:
    """A new vault at `path` (made if missing); refuses to touch an existing vault."""
    path = path.expanduser()
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
        vault = Vault(path)
        fs.mkdirs(vault.meta)  # modes from the umask: 0o777 and 0o666 masked
        atomic.write_new(vault.config_path, _DEFAULT_CONFIG.encode())
        return vault
    return Vault(path)

"""Signing secrets (a hook's webhook, a webhook trigger's HTTP endpoint): never from the
vault, whose every writer would know them, but from a file outside it or from the
environment of the process that signs or checks."""

from __future__ import annotations

import os
from pathlib import Path

SECRET_MAX = 64 * 1024


class SecretUnusable(Exception):
    """The secret cannot be had: what needs it is refused with this message."""


def read(owner: str, secret_env: str | None, secret_file: str | None, vault_root: Path,
         environ: dict[str, str]) -> bytes | None:
    """The secret `owner` (like "hook 'web'") names, None when it names none.

    A file is read each time (a rotated secret is used at once), trailing whitespace
    stripped; a file inside the vault is refused."""
    if secret_env is not None:
        value = environ.get(secret_env)
        if not value:
            raise SecretUnusable(f"{owner}: the environment variable {secret_env} holding "
                                 f"its secret is not set or empty (set it in the process's "
                                 f"environment, e.g. its unit)")
        return value.encode()
    if secret_file is None:
        return None
    path = Path(secret_file)
    real = Path(os.path.realpath(path))
    if real == vault_root or vault_root in real.parents:
        raise SecretUnusable(f"{owner}: secret_file {path} is inside the vault; keep secrets "
                             f"out of it (e.g. /etc/modulatio/)")
    try:
        with open(path, "rb") as f:  # outside the vault: not a vault file, not store/fs
            data = f.read(SECRET_MAX + 1)
    except OSError as e:
        raise SecretUnusable(f"{owner}: cannot read secret_file {path}: {e.strerror} (make "
                             f"it readable by the process's user)") from None
    data = data.strip()
    if not data or len(data) > SECRET_MAX:
        raise SecretUnusable(f"{owner}: secret_file {path} is empty or over 64 KiB")
    return data

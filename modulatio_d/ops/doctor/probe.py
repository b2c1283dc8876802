"""What every check of `modulatio doctor` is given: the Probe (the vault, who runs, the
folder for probe files, the mount). A check is a function Probe -> list of Rows; one that
raises OSError becomes a caveat row of its own without stopping the others.

Probe files live in Vault.doctor_dir and are named `<run>.<what>`, where <run> is
`<host>-<pid>` (Probe.own), so that runs on several hosts never write the same file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modulatio_d.core.filesystems import FsClass, Mount, Verdict
from modulatio_d.ops.doctor.report import Row
from modulatio_d.store.vault import Vault


@dataclass
class Probe:
    """What the checks share: the vault, who runs, where the probe files go, the mount."""

    vault: Vault
    host: str
    run: str
    folder: Path | None
    """Vault.doctor_dir, or None when it could not be made."""
    mount: Mount | None
    fs: FsClass | None
    sync: FsClass | None = None
    notes: dict[str, object] = field(default_factory=dict)

    def own(self, what: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{self.run}.{what}"


Check = Callable[[Probe], list[Row]]


def no_folder(check: str, probe: Probe) -> list[Row]:
    folder = probe.vault.doctor_dir
    return [Row(check, Verdict.CAVEAT, f"not run: this user cannot make or write {folder}",
                f"run doctor as the daemons' user, or remove {folder} if another user made it")]

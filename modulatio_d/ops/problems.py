"""What `validate` reports: a problem of one file, with its line, its hint, how bad it is,
and whether the daemons refuse the file outright."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from modulatio_d.core.errors import BadFile


class Severity(StrEnum):
    ERROR = "error"
    """The daemons refuse the file, or what it names fails when it runs."""
    WARNING = "warning"
    """It may work: validate cannot see what the daemon will see. `--strict` fails on it."""


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str
    line: int | None = None
    hint: str = ""
    severity: Severity = Severity.ERROR
    refused: bool = False
    """The daemons refuse the file (it does not read, has a wrong shape, or fails a trust
    check): they never run or change it. A meaning problem (refused False) is of a file the
    daemons do run, where it will fail or may work."""

    @classmethod
    def of(cls, error: BadFile) -> Problem:
        return cls(error.path, error.reason, error.line, error.hint, refused=True)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else f"{self.path}"
        return f"{where}: {self.severity}: {self.reason}" + (f" ({self.hint})" if self.hint
                                                               else "")

    def as_dict(self) -> dict:
        return {"path": str(self.path), "line": self.line, "reason": self.reason,
                "hint": self.hint, "severity": self.severity.value, "refused": self.refused}

"""What `modulatio doctor` reports: one Row per finding, and the Report that sums them up.
The report's verdict is the worst of its rows; its exit code that verdict's number: 0 ok,
1 works with caveats, 2 unsafe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modulatio_d.core.filesystems import Verdict


@dataclass(frozen=True)
class Row:
    check: str
    verdict: Verdict
    detail: str
    hint: str = ""
    data: dict[str, object] = field(default_factory=dict)
    """What was measured, for scripts (`--json`): times in ms, sizes in bytes."""


@dataclass
class Report:
    vault: Path
    host: str
    rows: list[Row]

    @property
    def verdict(self) -> Verdict:
        return max((r.verdict for r in self.rows), default=Verdict.OK)

    @property
    def exit_code(self) -> int:
        return int(self.verdict)

    def as_json(self) -> dict:
        return {"vault": str(self.vault), "host": self.host, "verdict": self.verdict.word,
                "exit_code": self.exit_code,
                "checks": [{"check": r.check, "verdict": r.verdict.word, "detail": r.detail,
                            "hint": r.hint, "data": r.data} for r in self.rows]}

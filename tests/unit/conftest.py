"""The unit lane's own fixtures: what keeps it within its budget (under 20 s on 2 cores).

fsync is a no-op in this lane. Durability is not what a unit test checks (it cannot:
nothing here pulls the power), and the lane's ~4,000 fsyncs cost a second of CPU and,
on a busy disk, many seconds of waiting. Every call site still runs (a test that makes
fsync fail patches it over this no-op, as tests/unit/test_budget.py does); that the
files reach the disk in the right order is the e2e and torture lanes' part
(tests/torture/: the strace crash-point matrices, the SIGKILL soak), where fsync is real.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _no_fsync():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", lambda fd: None)
        yield

"""Waiting for a condition with a deadline: the one way tests wait (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "",
             interval: float = 0.01, diag: Callable[[], str] | None = None):
    """Poll `condition()` until truthy and return its value; fail after `timeout` s,
    with `diag()` (a daemon's log, say) in the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = ("\n" + diag()) if diag else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}{extra}")
        time.sleep(interval)

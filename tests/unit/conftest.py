"""The unit lane's own fixtures: what keeps it within its budget (under 20 s on 2 cores).

fsync is a no-op in this lane. Durability is not what a unit test checks (it cannot:
nothing here pulls the power), and the lane's ~4,000 fsyncs cost a second of CPU and,
on a busy disk, many seconds of waiting. Every call site still runs (a test that makes
fsync fail patches it over this no-op, as tests/unit/test_budget.py does); that the
files reach the disk in the right order is the e2e and torture lanes' part
(tests/torture/: the strace crash-point matrices, the SIGKILL soak), where fsync is real.

`tmp_path` is on a tmpfs (/dev/shm) where there is one: the lane makes about 7,000
folders and 10,000 files, and on this project's machines a mkdir on the ext4 of a
virtual disk costs 0.13 ms against 0.004 ms on tmpfs (several seconds of the lane).
The e2e, multihost and torture lanes keep pytest's own folder on the disk: they test
the daemon on the filesystem people use.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

SHM = Path("/dev/shm")


@pytest.fixture(autouse=True, scope="session")
def _no_fsync():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", lambda fd: None)
        yield


def _on_tmpfs(path: Path) -> bool:
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return False
    return any(m[1] == str(path) and m[2] == "tmpfs" for m in mounts if len(m) > 2) \
        and os.access(path, os.W_OK | os.X_OK)


@pytest.fixture(scope="session")
def _unit_tmp_root(tmp_path_factory):
    """Where this session's unit tests get their tmp_path: a folder on /dev/shm, removed
    at the end of the session, else pytest's own base folder."""
    if not _on_tmpfs(SHM):
        yield tmp_path_factory.getbasetemp()
        return
    root = Path(tempfile.mkdtemp(prefix="modulatio-unit-", dir=SHM))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tmp_path(request, _unit_tmp_root) -> Path:
    """pytest's tmp_path, on a tmpfs where there is one (see above)."""
    name = re.sub(r"\W", "_", request.node.name)[:30]
    return Path(tempfile.mkdtemp(prefix=name, dir=_unit_tmp_root))

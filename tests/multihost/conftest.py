"""Fixtures of the tests of several hosts on one vault (tests/multihost/, marked
`multihost` and `e2e`): the GlusterFS test bed of multihost_bed.py.

- `testbed` (session): the bed with HOSTS hosts, up once for the session (shared with
  any other session on the machine) and down at its end; skips, loudly (a line on the
  terminal and the reason in the summary), only where the machine cannot have it: no
  FUSE, no namespaces, not root, or the GlusterFS packages cannot be installed.
- `bed` (function): the same Bed; at teardown every process the test started on any host
  is killed.
- `shared_dir`: a new empty folder on the shared volume (the same path on every host),
  removed after the test; `shared_vault`: `modulatio init` run in it on h1.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from multihost_bed import Bed, Session, Unavailable

HOSTS = 3
TIMINGS = pytest.StashKey[dict]()
SKIPPED = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def testbed(request) -> Bed:
    session = Session(HOSTS)
    try:
        bed = session.acquire()
    except Unavailable as e:
        request.config.stash[SKIPPED] = str(e)
        plugins = request.config.pluginmanager
        reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin(
            "capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():  # straight to the terminal, now
                reporter.write_line(f"\nMULTIHOST TESTS SKIPPED: {e}", red=True, bold=True)
        pytest.skip(f"multihost: no GlusterFS test bed: {e}")
    request.config.stash[TIMINGS] = session.timings
    try:
        yield bed
    finally:
        session.release()


def pytest_terminal_summary(terminalreporter, config):
    """How long the bed took (docs/multi-host.md quotes these), or why there was none."""
    skipped = config.stash.get(SKIPPED, None)
    if skipped:
        terminalreporter.write_line(f"MULTIHOST TESTS SKIPPED: {skipped}", red=True, bold=True)
    timings = config.stash.get(TIMINGS, None)
    if timings:
        shown = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        terminalreporter.write_line(f"GlusterFS test bed: {shown}")


@pytest.fixture
def bed(testbed: Bed):
    try:
        yield testbed
    finally:
        for host in testbed.hosts:
            testbed.kill_all(host)


@pytest.fixture
def shared_dir(bed: Bed, request) -> Path:
    name = f"t-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace(
        "]", "").replace("/", "-")
    path = bed.mount / name
    bed.run_on("h1", "mkdir", path)
    yield path
    local = bed.path("h1", path)
    for _ in range(5):  # a rename racing on another host can make one pass fail (ESTALE)
        shutil.rmtree(local, ignore_errors=True)
        if not local.exists():
            break
        time.sleep(0.2)


@pytest.fixture
def shared_vault(bed: Bed, shared_dir: Path) -> Path:
    vault = shared_dir / "vault"
    done = bed.modulatio("h1", "init", vault)
    assert done.returncode == 0, done.stdout + done.stderr
    return vault


@pytest.fixture(params=["recommended", "default"])
def volume(bed: Bed, request) -> Iterator[str]:
    """Each set of volume options in turn (recommended, GlusterFS's defaults: the bed's
    `volume-options`), GlusterFS's defaults again after."""
    bed.volume_options(request.param)
    try:
        yield request.param
    finally:
        bed.volume_options("default")

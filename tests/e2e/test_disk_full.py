"""A full disk never stops the daemon: it holds the plan, lets it go, and finishes it later.

The vault lives on a 512 KiB tmpfs in a mount namespace of its own (`unshare -rm`,
no root needed), so the disk really fills: see tests/e2e/disk_full_scenario.py.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).with_name("disk_full_scenario.py")


def _can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.timeout(120)
@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -rm (user and mount namespaces)")
def test_a_daemon_survives_a_full_disk_and_completes_the_plan_once_freed(tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    log = tmp_path / "daemon.log"
    done = subprocess.run(["unshare", "-rm", sys.executable, str(SCENARIO), str(mount), str(log)],
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr + log.read_text()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    text = log.read_text()
    assert result["left"], text
    assert result["alive_while_full"] and result["alive_after"], text
    assert result["statuses_while_full"] == ["executing"], result  # and it always parsed
    assert result["completed"] and result["done"], text
    assert result["exit"] == 0
    assert "No space left on device" in text

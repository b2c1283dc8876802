"""What importing the sd_notify module costs, in a fresh interpreter (the sender against
real sockets: tests/unit/test_notifier.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import modulatio_d


def test_import_is_cheap():
    # Monitors import the CLI every few seconds: the module must not pull in
    # `socket` (or anything heavy) until a Notifier actually has a socket.
    code = "import sys, modulatio_d.daemon.sdnotify; print('socket' in sys.modules)"
    root = Path(modulatio_d.__file__).resolve().parent.parent  # `python -c` imports from cwd
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=root)
    assert out.stdout.strip() == "False"

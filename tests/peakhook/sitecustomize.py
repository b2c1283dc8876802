"""Loaded by every Python process tests/e2e/measured.py starts (its PYTHONPATH points
here): at exit, write this process's own peak resident memory (VmHWM of its address
space, made at exec) to $MODULATIO_TEST_PEAK_FILE. ru_maxrss cannot tell it: Linux
carries the parent's high-water mark through fork and exec, so a child of a large
pytest process "peaks" at pytest's size. The variable is removed at once, so the
processes this one starts (steps) do not write over it."""

import atexit
import os

_path = os.environ.pop("MODULATIO_TEST_PEAK_FILE", None)


def _write() -> None:
    try:
        with open("/proc/self/status") as f:
            kib = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
        with open(_path, "w") as f:
            f.write(kib)
    except (OSError, StopIteration):
        pass


if _path:
    atexit.register(_write)

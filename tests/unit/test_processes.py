"""A number read from a file is a pid only when a process could have it: zero and -1 must
never reach kill(2) (they mean the caller's group and every process it may signal), and a
number past the kernel's limit must not raise OverflowError in a reader."""

from __future__ import annotations

import os

import pytest

from modulatio_d.store import processes


# The negated own pid has a fixed id: parallel workers (pytest -n) must collect the same names.
@pytest.mark.parametrize("value", [0, -1, pytest.param(-os.getpid(), id="minus-own-pid"),
                                   2 ** 22 + 1, 10 ** 30, True, 1.0, "1", None])
def test_what_no_process_can_have_is_no_pid_and_is_gone(value):
    assert processes.as_pid(value) is None
    if isinstance(value, int):
        assert processes.gone(value)


def test_a_running_process_is_a_pid_and_not_gone():
    assert processes.as_pid(os.getpid()) == os.getpid()
    assert processes.as_pid(2 ** 22) == 2 ** 22
    assert not processes.gone(os.getpid())

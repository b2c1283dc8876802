"""While a step runs, other plans' writes wake nothing (daemon/wake.py `focused`)."""

from __future__ import annotations

from modulatio_d.daemon.wake import Waker


def test_a_focused_waker_is_woken_by_its_plan_only_and_the_rest_is_taken_later():
    waker = Waker()
    try:
        mine, other = "/v/B/plans/B-P-001.md", "/v/C/plans/C-P-002.md"
        with waker.focused(mine):
            waker.poke(other)  # another plan written: queued, no wake-up
            assert waker.wait(0) is False
            waker.poke(mine)  # its own plan (a person's abort): wakes
            assert waker.wait(0) is True
            waker.poke()  # not a plan (a signal, the config, pause.yaml): wakes
            assert waker.wait(0) is True
            waker.poke(other)
        assert waker.wait(5.0) is True  # the first wait after it returns at once
        assert waker.take_changed() == {other, mine, ""}
        assert waker.wait(0) is False  # nothing held back: a wait as before
    finally:
        waker.close()

"""Progress on stderr (cli/progress.py): only on a terminal, only past a second."""

from __future__ import annotations

import io

from modulatio_d.cli.progress import reporter


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_past_a_second_on_a_terminal_and_is_cleared():
    now = [0.0]
    err = Tty()
    tick, done = reporter(err, "plan list", clock=lambda: now[0])
    tick()
    assert err.getvalue() == ""  # a quick run prints nothing
    now[0] = 1.5
    tick()
    assert err.getvalue() == "\rplan list: 2 read"
    done()
    assert err.getvalue().endswith("\r\033[K")


def test_no_progress_off_a_terminal():
    now = [0.0]
    err = io.StringIO()
    tick, done = reporter(err, "validate", clock=lambda: now[0])
    now[0] = 5.0
    tick()
    done()
    assert err.getvalue() == ""


def test_the_collector_is_paused_until_done():
    import gc

    assert gc.isenabled()
    tick, done = reporter(io.StringIO(), "status")
    tick()
    assert not gc.isenabled()
    done()
    assert gc.isenabled()

"""Progress on stderr for commands that read many files: shown only on a terminal, and
only once the command has taken more than a second (a quick run prints nothing).

Between reporter() and done() the cyclic garbage collector is paused: what such a
command makes (a listing entry, a row, a look per file) holds no cycle, and at 100,000
plans the collector's passes over them were 5-13% of a warm command's CPU time. done()
runs it again (it was running before), so a long-lived caller keeps it."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import TextIO

AFTER_S = 1.0
EVERY_S = 0.2


def reporter(err: TextIO, what: str,
             clock: Callable[[], float] = time.monotonic) -> tuple[Callable[[], None],
                                                                    Callable[[], None]]:
    """(tick, done): call tick() once per file read; done() clears the line."""
    start = clock()
    state = {"n": 0, "shown": 0.0, "drawn": False, "collect": gc.isenabled()}
    gc.disable()
    tty = err.isatty()

    def tick() -> None:
        state["n"] += 1
        now = clock()
        if now - start > AFTER_S and now - state["shown"] > EVERY_S:
            err.write(f"\r{what}: {state['n']} read")
            err.flush()
            state["shown"], state["drawn"] = now, True

    def done() -> None:
        if state["collect"]:
            gc.enable()
        if state["drawn"]:
            err.write("\r\033[K")
            err.flush()

    # Off a terminal nothing is shown: `int` then, a call made in C (a Python call a file
    # was 3-5 ms of a warm 10,000-plan command).
    return (tick if tty else int), done

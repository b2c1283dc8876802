"""The cold part of a command, on every core: rows of many plan files parsed by a pool.

A command whose row cache (store/rowcache.py) is cold parses each plan it has no row
for (about 1 ms a plan against 15 us to read it). Past MIN_FILES such files, and with
more than one core, the parses are shared by forked workers: each gets a slice of the
paths (CHUNK at a time, in order) and sends back the rows, plain dicts, which the
command then takes exactly as it takes a cached row. So a parallel run, a serial one
and a warm one give the same output by construction: the worker runs the same
function as the serial path, and whatever it cannot turn into a row (None: a file the
command must look at itself, e.g. one it cannot read) is done again by the command.

Forked, not spawned: the workers inherit the imports and the vault's root descriptor
(store/fs opens beneath it), so a worker costs a fork, not an interpreter's start.
Any failure of the pool itself (no fork, no semaphores in a sandbox) falls back to the
serial path: the pool is only ever an optimisation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import import_module
from operator import attrgetter

from modulatio_d.store import fs
from modulatio_d.store.rowcache import RowCache

MIN_FILES = 2000
"""Below this many files to parse, one process: the fork, the pool's start and the rows'
trip back cost more than half of the parses saved (about 1 s of work on this hardware)."""
CHUNK = 250

_JOB: Callable[[str], dict | None] | None = None
"""The row function of the pool being run: set before the fork, inherited by the workers
(a closure cannot be pickled to them)."""


def workers(count: int) -> int:
    """How many processes parse `count` files: 1 below MIN_FILES, on one core, or in a
    process with threads (the HTTP API's server: a fork copies only the forking thread,
    and a lock another one holds stays held in the child)."""
    import threading

    if count < MIN_FILES or threading.active_count() > 1:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 8))


def rows(paths: Sequence[str], row_of: Callable[[str], dict | None],
         tick: Callable[[], None] = lambda: None, jobs: int | None = None,
         preload: Sequence[str] = ()) -> Iterator[tuple[str, dict | None]]:
    """(path, row_of(path)) for each path, in order; `tick()` after each (progress).
    `jobs`: the number of processes (workers(len(paths)) when None). `preload`: the
    modules `row_of` imports when it first runs (a command imports its file readers only
    when a file must be read), imported before a pool forks: once, not in each worker."""
    global _JOB
    jobs = workers(len(paths)) if jobs is None else jobs
    pool = None
    if jobs > 1:
        for name in preload:
            import_module(name)
        _JOB = row_of  # before the fork: the workers inherit it
        try:
            pool = start(jobs)
        except (OSError, ImportError):
            _JOB = None  # no pool here (no fork, no semaphores): one process
    if pool is None:
        for path in paths:
            yield path, row_of(path)
            tick()
        return
    chunks = [list(paths[i:i + CHUNK]) for i in range(0, len(paths), CHUNK)]
    try:
        with pool:
            done = pool.imap(_chunk, chunks)  # in order; the first rows come back early
            for chunk in chunks:
                for path, row in zip(chunk, next(done), strict=True):
                    yield path, row
                    tick()
    finally:
        _JOB = None


def missing(cache: RowCache, entries: Iterable[fs.Entry],
            row_of: Callable[[str, os.stat_result], dict | None],
            tick: Callable[[], None] = lambda: None,
            preload: Sequence[str] = ()) -> dict[str, dict]:
    """path -> row_of(path, lstat) for the entries `cache` has no row for, made by the pool,
    when MIN_FILES or more have none; {} otherwise (the caller then makes each in its
    turn), and without the rows that are None. `tick()` once a row made here."""
    entries = list(entries)
    if len(entries) - sum(map(cache.old.__contains__, map(attrgetter("path"), entries))) \
            < MIN_FILES:
        return {}  # warm, or nearly: a dictionary look-up a file (in C) to know it
    todo = {e.path: e.st for e in entries if cache.get(e.path, e.st) is None}
    if workers(len(todo)) < 2:
        return {}
    return {p: row for p, row in rows(list(todo), lambda p: row_of(p, todo[p]), tick,
                                      preload=preload) if row is not None}


def start(jobs: int):
    """A pool of `jobs` forked workers (with imap, and closed by `with`)."""
    import multiprocessing

    return multiprocessing.get_context("fork").Pool(jobs)


def _chunk(paths: list[str]) -> list[dict | None]:
    assert _JOB is not None
    return [_JOB(p) for p in paths]

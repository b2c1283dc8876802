"""`modulatio doctor --peer`: two hosts check each other's locks and visibility through
files in Vault.doctor_dir, named `<run>.<what>` as every probe file (probe.py).

`--peer` (two hosts at once on one vault; each run does the same, in lockstep through
files, every wait bounded):
  1. write <run>.hello; wait up to `peer_wait` s for another run's hello written within
     the last `peer_wait` + 60 s (by its mtime; of several, the newest): none means
     "no peer seen". Run it on two hosts at a time.
  2. take an flock on <run>.flock and a POSIX lock on <run>.posix; write <run>.held.
  3. on the peer's .held: try the peer's two locks without waiting (both must fail:
     that is exclusion across hosts); write <run>.probed with the outcome.
  4. on the peer's .probed: release the own locks; write <run>.released.
  5. on the peer's .released: take the peer's locks (polling, up to 10 s: the takeover
     time) and release them.
  6. ping-pong, the run with the smaller id first: the pinger replaces <run>.ping with
     round n (temp file + rename: the case client caches serve stale), the answerer
     reads it by open() until it sees n and replaces its <run>.pong with n; the pinger
     measures the round trip on its own clock (no clock is compared across hosts).
  7. write <run>.done; wait for the peer's .done and remove it (it was the peer's last
     word to us); remove the own files but .done, which the peer may not have read yet
     (if it never does, it is a leftover of over an hour for a later run to remove).
Throughout, an inotify watch on the folder counts events for the peer's files: on a
network filesystem there are none, because inotify reports this kernel's changes only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modulatio_d.core.filesystems import Verdict
from modulatio_d.ops.doctor.files import Inotify, read_retrying, write_atomic
from modulatio_d.ops.doctor.locks import take_within, try_lock
from modulatio_d.ops.doctor.probe import Probe, no_folder
from modulatio_d.ops.doctor.report import Row
from modulatio_d.store import fs

STEP_S = 20.0
"""The longest wait for one step of the peer protocol (a round trip on a slow cache)."""
TAKEOVER_S = 10.0
PING_ROUNDS = 5
FRESH_S = 0.1
"""A file another host replaced and that is read later than this is called stale."""


class PeerLost(Exception):
    pass


@dataclass
class PeerRun:
    probe: Probe
    watch: Inotify | None
    peer: str = ""
    peer_host: str = ""
    errors: dict[str, int] = field(default_factory=dict)
    peer_events: int = 0

    @property
    def folder(self) -> Path:
        assert self.probe.folder is not None
        return self.probe.folder

    def theirs(self, what: str) -> Path:
        return self.folder / f"{self.peer}.{what}"

    def put(self, what: str, value: object) -> None:
        write_atomic(self.probe.own(what), json.dumps(value).encode())

    def get(self, path: Path) -> object | None:
        raw = read_retrying(path, self.errors)
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None  # a stale or torn read on a filesystem without atomic rename

    def await_value(self, what: str, accept: Callable[[object], bool] = lambda v: v is not None,
                    timeout: float = STEP_S) -> object:
        deadline = time.monotonic() + timeout
        while True:
            value = self.get(self.theirs(what))
            if value is not None and accept(value):
                return value
            if time.monotonic() > deadline:
                raise PeerLost(f"{self.peer_host} wrote no {what} within {timeout:g} s")
            self.pump(0.003)

    def pump(self, seconds: float) -> None:
        """Wait, counting the inotify events for the peer's files meanwhile."""
        if self.watch is None:
            time.sleep(seconds)
            return
        for name in self.watch.names(seconds):
            if self.peer and name.startswith(self.peer + "."):
                self.peer_events += 1


def peer_checks(probe: Probe, peer_wait: float) -> list[Row]:
    if probe.folder is None:
        return no_folder("peer", probe)
    try:
        watch: Inotify | None = Inotify(probe.folder)
    except OSError:
        watch = None
    pr = PeerRun(probe, watch)
    try:
        return _peer_protocol(pr, peer_wait)
    except PeerLost as e:
        return [Row("peer", Verdict.CAVEAT, f"the peer check stopped half way: {e}",
                    "run `modulatio doctor --peer` on both hosts again at the same time")]
    finally:
        if watch is not None:
            watch.close()


def _find_peer(pr: PeerRun, peer_wait: float) -> dict | None:
    """The other run's hello; of several, the newest (an older one may be a run that was
    killed before it could remove its files)."""
    pr.put("hello", {"run": pr.probe.run, "host": pr.probe.host, "pid": os.getpid()})
    deadline = time.monotonic() + peer_wait
    while time.monotonic() < deadline:
        found = []
        for name in fs.names(pr.folder):
            run_id = name.removesuffix(".hello")
            if run_id == name or run_id == pr.probe.run:
                continue
            try:
                mtime = fs.stat_of(pr.folder / name).st_mtime
            except OSError:
                continue
            hello = pr.get(pr.folder / name)
            if time.time() - mtime < peer_wait + 60 and isinstance(hello, dict):
                found.append((mtime, hello))
        if found:
            return max(found, key=lambda f: f[0])[1]
        pr.pump(0.05)
    return None


def _peer_protocol(pr: PeerRun, peer_wait: float) -> list[Row]:
    me = pr.probe
    hello = _find_peer(pr, peer_wait)
    if hello is None:
        return [Row("peer", Verdict.CAVEAT, f"no peer seen in {peer_wait:g} s",
                    "start `modulatio doctor --peer` on the other host within that time")]
    pr.peer, pr.peer_host = str(hello.get("run")), str(hello.get("host"))
    rows = []
    if pr.peer_host == me.host:
        rows.append(Row("peer", Verdict.CAVEAT, f"the peer ({pr.peer}) runs on this host too: "
                        "nothing below crosses hosts", "run the peer on another host"))
    else:
        rows.append(Row("peer", Verdict.OK, f"{pr.peer_host} (run {pr.peer}) seen"))

    # 2-5: each holds its own locks while the other probes them, then hands them over.
    fds = {kind: fs.open_regular(me.own(kind), os.O_RDWR | os.O_CREAT)
           for kind in ("flock", "posix")}
    try:
        for fd in fds.values():
            os.fchmod(fd, 0o666)  # the peer may run as another user: it opens them to write
        for kind, fd in fds.items():
            if not try_lock(fd, kind):
                raise PeerLost(f"own {kind} lock held by someone else")
        pr.put("held", True)
        pr.await_value("held")
        probed = {}
        for kind in fds:
            try:
                probed[kind] = "blocked" if take_within(pr.theirs(kind), kind, 0) is None \
                    else "taken"
            except OSError as e:
                probed[kind] = f"error: {e.strerror}"
        pr.put("probed", probed)
        theirs = pr.await_value("probed", lambda v: isinstance(v, dict))
    finally:
        for fd in fds.values():
            fs.close(fd)
    pr.put("released", True)
    pr.await_value("released")
    taken = {}
    for kind in ("flock", "posix"):
        try:
            took = take_within(pr.theirs(kind), kind, TAKEOVER_S)
        except OSError as e:
            took = None
            taken[kind + "_error"] = e.strerror
        taken[kind] = took
    rows += [_cross_lock_row(pr, kind, probed.get(kind), theirs.get(kind), taken.get(kind))
             for kind in ("flock", "posix")]

    # 6: round trips through replaced files, the smaller run id pinging first.
    trips: list[float] = []
    for pinging in ((True, False) if me.run < pr.peer else (False, True)):
        if pinging:
            trips = _ping(pr)
        else:
            _answer(pr)
    rows.append(_freshness_row(pr, trips))

    # 7: both done before either removes its files (the other may still read them).
    me.notes["keep_done"] = True
    pr.put("done", True)
    pr.await_value("done")
    try:
        fs.unlink(pr.theirs("done"))
    except OSError:
        pass
    pr.pump(0.2)  # late inotify events for the peer's last files
    rows.append(_peer_inotify_row(pr))
    return rows


def _cross_lock_row(pr: PeerRun, kind: str, mine: object, theirs: object,
                    took: object) -> Row:
    flock = kind == "flock"
    what, verb, neg = ("flock", "excludes", "does") if flock else (
        "POSIX locks (lockf)", "exclude", "do")
    name = "flock across hosts" if flock else "posix across hosts"
    me, peer = pr.probe.host, pr.peer_host
    if mine != "blocked" or theirs != "blocked":
        verdict = Verdict.UNSAFE if flock else Verdict.CAVEAT
        return Row(name, verdict,
                   f"{what} {neg} not exclude across hosts: {me} probing {peer}'s lock: "
                   f"{mine}; {peer} probing {me}'s: {theirs}",
                   "two hosts would run the same plan: use one host, or a filesystem from "
                   "docs/multi-host.md" if flock else
                   "the daemons use flock; a step that uses lockf is not protected")
    if not isinstance(took, float):
        return Row(name, Verdict.CAVEAT, f"{what} {verb} across hosts, but {peer}'s lock was "
                   f"not free here {TAKEOVER_S:g} s after {peer} released it")
    return Row(name, Verdict.OK, f"{what} {verb} both ways between {me} and {peer}; "
               f"{peer}'s lock was taken here {took * 1000:.0f} ms after its release",
               data={"takeover_ms": round(took * 1000, 1)})


def _ping(pr: PeerRun) -> list[float]:
    trips = []
    for n in range(1, PING_ROUNDS + 1):
        start = time.monotonic()
        pr.put("ping", n)
        pr.await_value("pong", lambda v, n=n: v == n)
        trips.append(time.monotonic() - start)
    pr.put("ping", "end")
    return trips


def _answer(pr: PeerRun) -> None:
    answered = 0
    while True:
        value = pr.await_value("ping", lambda v, a=answered: v == "end" or (
            isinstance(v, int) and v > a))
        if value == "end":
            return
        assert isinstance(value, int)
        answered = value
        pr.put("pong", value)


def _freshness_row(pr: PeerRun, trips: list[float]) -> Row:
    peer = pr.peer_host
    errs = ", ".join(f"{k} x{v}" for k, v in sorted(pr.errors.items()))
    retried = f"; reads retried after {errs}" if errs else ""
    if not trips:
        return Row("freshness across hosts", Verdict.CAVEAT, "no round trip measured")
    worst, median = max(trips), sorted(trips)[len(trips) // 2]
    here = pr.probe.host
    text = (f"a file replaced on one host and read on the other: {len(trips)} round trips "
            f"{here}->{peer}->{here}, median {median * 1000:.0f} ms, "
            f"slowest {worst * 1000:.0f} ms{retried}")
    data: dict[str, object] = {"round_trips_ms": [round(t * 1000, 1) for t in trips],
                               "retried": dict(pr.errors)}
    if worst / 2 <= FRESH_S:
        return Row("freshness across hosts", Verdict.OK, text, data=data)
    hint = ("set the volume's performance.stat-prefetch and performance.open-behind off"
            if pr.probe.mount is not None and pr.probe.mount.fstype == "fuse.glusterfs"
            else "see the recommended options in docs/multi-host.md")
    return Row("freshness across hosts", Verdict.CAVEAT,
               f"{text}: {peer} can read state up to about {worst * 1000 / 2:.0f} ms old", hint,
               data)


def _peer_inotify_row(pr: PeerRun) -> Row:
    if pr.watch is None:
        return Row("inotify across hosts", Verdict.CAVEAT, "no inotify watch here to test with")
    if pr.peer_events:
        return Row("inotify across hosts", Verdict.OK,
                   f"inotify here reported {pr.peer_events} events for {pr.peer_host}'s files",
                   data={"events": pr.peer_events})
    return Row("inotify across hosts", Verdict.CAVEAT,
               f"inotify here reported none of {pr.peer_host}'s writes: a daemon here sees "
               f"work approved on {pr.peer_host} only at its next tick",
               "keep --tick-seconds short (polling pickup: not yet, see docs/multi-host.md)")

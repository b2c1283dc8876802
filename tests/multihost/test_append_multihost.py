"""Appends of several hosts to one file (file_probe.py on each host), the ground truth
being the brick's copy of the file, read by this process past every client.

What a `step_started` line missing from events.jsonl in the soak was suspected of, and
what these measure (docs/multi-host.md, "O_APPEND does not keep two hosts' records
apart"): that the Linux FUSE client (no writeback cache) places an O_APPEND write at the
size its attribute cache holds, so a host that opened or stat'ed the file, then waited
for the flock while another host appended, writes over the other host's record. It does
not: GlusterFS appends at the end of the file on the server. The kernel's view of the end
is stale in these rounds (lseek SEEK_END under the flock answers the size from before the
other host's append), yet no record is lost. Nor is any while the clients switch to a new
volume graph (a volume option changed mid-run), nor from six writers at once under the
flock. Without the flock, records of two hosts interleave (torn lines, no byte lost).

What was found instead: an open with O_CREAT but no O_EXCL fails with EEXIST, now and
then, when several hosts create the file at the same moment (store/fs/ open_regular
tries it again now): the append, and the line, was lost.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from multihost_bed import BED_DIR, PROBE, PY, Probe

pytestmark = pytest.mark.timeout(180)

ROUNDS = 30


def on_brick(bed, path: Path) -> Path:
    return BED_DIR / "brick" / path.relative_to(bed.mount)


def line(who: str, k: int) -> str:
    return f"{who}{k:04d}-" + "x" * 100  # one length for all: an overwrite would be clean


def test_an_append_after_another_hosts_lands_after_it_though_the_size_seen_is_stale(
        bed, shared_dir, volume):
    name = "two.log"
    h1, h2 = Probe(bed, "h1", shared_dir), Probe(bed, "h2", shared_dir)
    stale = 0
    try:
        h1.do("append", name, "first")
        for k in range(ROUNDS):
            # h1 opens as append does, then waits: h2 appends meanwhile, then h1 writes.
            h1.do("open", name)
            h2.do("append", name, line("A", k))
            before = on_brick(bed, shared_dir / name).stat().st_size
            stale += int(h1.do("finish", line("B", k))) < before
            # h1 has the size cached (a stat: any look at the file), h2 appends, then h1.
            h1.do("stat", name)
            h2.do("append", name, line("C", k))
            h1.do("append", name, line("D", k))
    finally:
        h1.close()
        h2.close()
    found = on_brick(bed, shared_dir / name).read_text().splitlines()
    want = ["first"] + [line(w, k) for k in range(ROUNDS) for w in "ABCD"]
    assert found == want, sorted(set(want) - set(found))
    # The window was there: h1's client saw an end from before h2's line (each round within
    # attribute-timeout, 1 s, of h1's open); a test where it never was would prove nothing.
    assert stale >= ROUNDS // 2, stale


def many(bed, folder: Path, tmp_path: Path, n: int, env: dict[str, str] | None = None,
         during=lambda: None) -> tuple[list[str], list[dict]]:
    """Two writers per host append `n` lines each; (the file's lines, what each reported)."""
    writers = [bed.start(h, PY, PROBE, folder, "many.log", str(n), f"{h}{k}",
                         log=tmp_path / f"{h}{k}.out", env=env)
               for h in ("h1", "h2", "h3") for k in range(2)]
    during()
    assert [w.wait(150) for w in writers] == [0] * len(writers), [w.log() for w in writers]
    told = [json.loads(w.log().strip().splitlines()[-1]) for w in writers]
    return on_brick(bed, folder / "many.log").read_text().splitlines(), told


def whole(lines: list[str]) -> Counter:
    return Counter(x.split("-")[0] for x in lines if len(x) == 110)


def test_six_writers_lose_no_line_while_the_clients_switch_volume_graphs(
        bed, shared_dir, tmp_path):
    n = 200

    def switch() -> None:  # each change makes every client load a new graph
        for k in range(4):
            bed.volume_set("performance.stat-prefetch", "off" if k % 2 == 0 else "on")
            time.sleep(0.3)

    try:
        lines, told = many(bed, shared_dir, tmp_path, n, during=switch)
    finally:
        bed.volume_options("default")
    assert [t["errors"] for t in told] == [{}] * 6
    assert len(lines) == 6 * n and whole(lines) == {t["tag"]: n for t in told}


@pytest.mark.xfail(strict=True, reason="without the flock, two hosts' records interleave")
def test_without_the_flock_records_of_six_writers_interleave(bed, shared_dir, tmp_path):
    # Measured (300 lines per writer): 14 and 36 of 1800 lines torn (recommended and
    # default options), every byte there: records interleave, none is written over.
    n = 200
    lines, _ = many(bed, shared_dir, tmp_path, n, env={"MULTIHOST_APPEND_LOCK": "off"})
    assert whole(lines) == {f"{h}{k}": n for h in ("h1", "h2", "h3") for k in range(2)}



def test_nine_writers_creating_one_file_at_once_each_append_lands(bed, shared_dir, tmp_path):
    # Without the retry of open_regular (MULTIHOST_CREATE_RETRY=off) one such append in
    # 360 to 540 failed with EEXIST, though it asked no O_EXCL (docs/multi-host.md): too
    # rare for a strict xfail here; tests/unit/test_fs.py pins the retry itself.
    rounds = 60
    t0 = time.time() + 3  # the hosts share this machine's clock
    racers = [bed.start(h, PY, PROBE, shared_dir, "race", str(rounds), str(t0), "0.1",
                        f"{h}{i}", log=tmp_path / f"{h}{i}.out")
              for h in ("h1", "h2", "h3") for i in range(3)]
    assert [r.wait(120) for r in racers] == [0] * len(racers), [r.log() for r in racers]
    failed = [f for r in racers for f in json.loads(r.log().strip().splitlines()[-1])["failed"]]
    assert failed == []
    for k in range(rounds):
        found = on_brick(bed, shared_dir / f"race.{k}").read_text().splitlines()
        assert sorted(found) == sorted(f"{h}{i}-{k:05d}" for h in ("h1", "h2", "h3")
                                       for i in range(3))


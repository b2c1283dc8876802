"""The daemon's scan on one host while another host replaces a plan by rename again and
again (an editor's or a daemon's atomic write), through file_probe.py on each host.

What a soak's daemon on h2 stopped on (docs/multi-host.md, "A close can fail"): its
scan read a plan h1 was writing, and the close of the read descriptor answered ENOENT,
GlusterFS's FUSE client flushing for a file the server no longer has. The scan must go
on: no pass raises, nothing is told as a bad file, the plans nobody touches are offered
in every pass. Meanwhile h3 reads the same file plainly and counts how often a plain
close (and open or read) fails on this race: the figures the docs quote.
"""

from __future__ import annotations

import json

import pytest
from multihost_bed import Probe

pytestmark = pytest.mark.timeout(300)

SECONDS = 10
STEADY = ["P-P-002", "P-P-003", "P-P-004"]


def test_a_scan_racing_another_hosts_renames_of_a_plan_goes_on(bed, shared_dir, volume):
    writer = Probe(bed, "h1", shared_dir)
    scanner, reader = Probe(bed, "h2", shared_dir), Probe(bed, "h3", shared_dir)
    try:
        bed.run_on("h1", "mkdir", "-p", str(shared_dir / "vault" / "P" / "plans"))
        for plan_id in ["P-P-001", *STEADY]:
            writer.do("replaceloop", f"vault/P/plans/{plan_id}.md", "0")  # once: the plan
        writer.send("replaceloop", "vault/P/plans/P-P-001.md", str(SECONDS))
        reader.send("readloop", "vault/P/plans/P-P-001.md", str(SECONDS))
        scanned = json.loads(scanner.do("scanloop", str(SECONDS)))
        read, replaced = reader.answer(), writer.answer()
    finally:
        for probe in (writer, scanner, reader):
            probe.close()
    print(f"\nreplace race ({volume} volume): {replaced} replaces; plain reads: {read}; "
          f"scans: {scanned}")
    assert scanned["raised"] == {}, scanned
    assert scanned["told"] == [], scanned
    assert all(scanned["offered"].get(p) == scanned["passes"] for p in STEADY), scanned
    assert scanned["offered"].get("P-P-001", 0) > 0, scanned

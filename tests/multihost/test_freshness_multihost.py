"""Freshness under the lock (issue 13, item 1): a daemon on one host completes a plan
and releases its lock; on the other host a claimer takes the lock the moment it is free,
through a client that has read the plan every 10 ms until then (claim_probe.py: the
daemon's own Claimer.claim). That client still serves the plan as it was before the
holder's last write (`executing`, the last step in flight) for up to its cache timeouts
(GlusterFS's default options and timeouts, 1 s). The
released lock notes the last rev; the claimer reads until it has it: it finds the plan
completed and claims nothing. Every step runs exactly once; no claimer acts on, or
repairs, a stale plan.

The test fails without that wait: with MULTIHOST_FRESH_READ=off in the environment the
probe replaces the claim's fresh read by nothing, and the claim takes the stale plan for
an orphan (`orphan_recovered`, the last step run again) or for a person's stale save
(`stale_save_repaired`, from the holder's record): the `off` case below, which must fail
(strict xfail: a run where it passes fails the lane, the test having lost its teeth)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from multihost_bed import PY
from waiting import wait_for

ROUNDS = 4
WAIT_GO = 'while [ ! -e "go-$MODULATIO_PLAN_ID" ]; do sleep 0.02; done'
MARK = 'echo "$(hostname) $MODULATIO_FENCING_TOKEN" >> "ran-$MODULATIO_PLAN_ID-{n}"'
PROBE = Path(__file__).with_name("claim_probe.py")
WRONG = ("orphan_step", "orphan_recovered", "stale_save_repaired", "claim_read_behind",
         "claimed")


def events(bed, vault, host: str, **match) -> list[dict]:
    try:
        text = bed.path(host, vault / ".modulatio" / "events.jsonl").read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if all(e.get(k) == v for k, v in match.items()):
            out.append(e)
    return out


@pytest.mark.parametrize("fresh_read", [
    "on", pytest.param("off", marks=pytest.mark.xfail(
        strict=True, reason="without the fresh read a claimer acts on a stale plan"))])
def test_a_plan_completed_on_one_host_is_never_acted_on_stale_on_another(
        bed, shared_vault, tmp_path, fresh_read):
    # GlusterFS's default options and cache timeouts (1 s): the probe's warm caches at
    # the lock's release hit the stale window in every round.
    bed.volume_options("default")
    _rounds(bed, shared_vault, tmp_path, fresh_read)


def _rounds(bed, shared_vault, tmp_path, fresh_read: str) -> None:
    a = bed.start_daemon("h1", shared_vault, log=tmp_path / "a.log", tick=0.05)
    folder = shared_vault / "P"
    probes = []
    for n in range(1, ROUNDS + 1):
        plan_id = f"P-P-{n:03d}"
        made = bed.modulatio("h1", "plan", "new", "P", f"Plan {n}", "--step", MARK.format(n=0),
                             "--step", f"{WAIT_GO}; {MARK.format(n=1)}", "--approve",
                             "--vault", shared_vault)
        assert made.returncode == 0, made.stderr
        wait_for(lambda p=plan_id: events(bed, shared_vault, "h1", plan=p,
                                          event="step_started", index=1), 30,
                 f"{plan_id}'s last step to start", diag=a.log)
        log = tmp_path / f"probe-{n}.log"
        probe = bed.start("h2", PY, PROBE, shared_vault, plan_id, log=log,
                          env={"MULTIHOST_FRESH_READ": fresh_read})
        # Let the probe warm h2's caches with the plan in its last step, then go: the
        # holder ends the step, completes the plan and releases its lock.
        wait_for(lambda p=probe: "warm" in p.log() or not p.alive(), 30,
                 "the probe to read the plan", diag=probe.log)
        bed.run_on("h1", "touch", folder / f"go-{plan_id}")
        assert probe.wait(90) in (0, 1), probe.log()
        probes.append(json.loads(probe.log().strip().splitlines()[-1]))
        wait_for(lambda p=plan_id: events(bed, shared_vault, "h1", event="status_changed",
                                          plan=p, status="completed"), 30,
                 f"{plan_id} completed", diag=a.log)
    # The probe's claim came first, at once, on the other host: it found each plan
    # completed, having waited for the noted rev; it never claimed, re-ran or repaired one.
    print(f"\nfreshness ({fresh_read}): {probes}")
    assert [p["outcome"] for p in probes] == ["not-claimable"] * ROUNDS, (probes, a.log())
    wrong = [e for e in events(bed, shared_vault, "h1") if e["event"] in WRONG
             and e["host"] == "h2"]
    assert wrong == [], (wrong, probes)
    for n in range(1, ROUNDS + 1):
        for step in (0, 1):
            lines = bed.path("h1", folder / f"ran-P-P-{n:03d}-{step}").read_text().splitlines()
            assert len(lines) == 1, (n, step, lines, a.log())


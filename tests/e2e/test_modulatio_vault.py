"""A vault in Modulatio's exact shape (tests/modulatio_vault.py) run as it is, with real
daemons and firers: issue 17, docs/migrating-from-modulatio.md."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import modulatio_vault as mv
import yaml
from helpers import cli

from modulatio_d.core import markdown
from modulatio_d.core.plan import DAEMON_KEYS
from modulatio_d.ops import modulatio_import
from modulatio_d.store import events, usage

HELPER = Path(__file__).parent / "cron_helpers" / "fire.py"
OWNED = frozenset({*DAEMON_KEYS, "status", "status_transitions", "tokens_used", "cost_usd_used"})
"""The keys a daemon writes in a Modulatio-shaped plan; every other byte is a person's."""
DECIDED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")


def modulatio_vault(dvault) -> dict[str, Path]:
    dvault.vault.config_path.write_text("agents:\n  default: {use: mock}\n")
    return mv.build(dvault.root)


def meta(path: Path) -> dict:
    return yaml.safe_load(path.read_text().split("---\n")[1])  # as Modulatio's tools read it


def persons_bytes(path: Path) -> str:
    return markdown.without_keys(path.read_text(), OWNED)


def test_validate_passes_and_the_daemon_runs_it_as_it_is(dvault, daemons):
    plans = modulatio_vault(dvault)
    before = {role: p.read_text() for role, p in plans.items()}
    assert cli(dvault, "validate").code == 0

    d = daemons("--once")
    assert d.wait(60) == 0, d.log()

    # The approved plans ran, in the file's own words; the others are untouched.
    for role in ("approved", "approved2", "orphan"):
        m = meta(plans[role])
        assert m["status"] == "done", (role, m.get("last_error"), d.log())
        assert m["current_index"] == before[role].count("\n**"), role
    for role in ("draft", "draft2", "paused", "paused2", "done", "done2", "declined",
                 "declined2"):
        assert plans[role].read_text() == before[role], role

    # The orphan resumed at step 1: steps 1 and 2 ran, step 0 did not run again.
    orphan = meta(plans["orphan"])
    assert [e.get("index") for e in orphan["reflection_log"]] == [None, 1, 2]
    assert orphan["reflection_log"][0] == mv.REFLECTION[0]  # its own entry, kept
    assert all(e["started_at"].endswith("+00:00") for e in orphan["reflection_log"][1:])
    assert orphan["execution_started_at"] == mv.STARTED  # kept: the wall clock counts from it

    for role in ("approved", "approved2", "orphan"):
        m, old = meta(plans[role]), yaml.safe_load(before[role].split("---\n")[1])
        # status_transitions: the old ones kept, one appended per change, its shape.
        new = m["status_transitions"][len(old.get("status_transitions") or []):]
        want = ["done"] if role == "orphan" else ["executing", "done"]
        assert [t["to"] for t in new] == want, role
        assert m["status_transitions"][:len(old["status_transitions"])] == \
            old["status_transitions"]
        for t in new:
            assert set(t) == {"to", "decided_by", "decided_at", "note"}
            assert t["decided_by"] == "daemon" and DECIDED_AT.fullmatch(t["decided_at"]), t
        # Token counters: what the plan had, plus what its steps used now.
        spent = usage.totals(usage.usage_path(plans[role]))
        assert spent.tokens > 0
        assert m["tokens_used"] == old.get("tokens_used", 0) + spent.tokens, role
        assert abs(m["cost_usd_used"] - old.get("cost_usd_used", 0) - spent.cost_usd) < 1e-6
        assert re.fullmatch(r"\d{4}-.*\.\d{6}\+00:00", m["completed_at"]), m["completed_at"]
        # Every byte outside the keys the daemon owns is the person's, unchanged.
        assert persons_bytes(plans[role]) == markdown.without_keys(before[role], OWNED), role
        assert plans[role].read_text().endswith(before[role].split("\n---\n", 1)[1])  # body

    show = cli(dvault, "plan", "show", "TST-PLAN-006")
    assert show.code == 0 and "log: after step 1 continue - step 1 went fine;" in show.out
    assert "status:   completed" in show.out and "file:     status done" in show.out


def test_a_body_that_does_not_parse_pauses_the_plan_with_a_ticket(dvault, daemons):
    modulatio_vault(dvault)
    broken = mv.write_plan(dvault.root, mv.plan_meta(20, "approved", approved_at=mv.APPROVED),
                           mv.body("Broken", 2))
    text = re.sub(r"(?m)^\*\*2\. .*$", "**2. Step two** then words, no separator",
                  broken.read_text())
    broken.write_text(text)
    body_before = text.split("\n---\n", 1)[1]
    listed = cli(dvault, "validate")
    assert listed.code == 1 and "TST-PLAN-020.md:" in listed.out + listed.err

    d = daemons("--once")
    assert d.wait(60) == 0, d.log()
    m = meta(broken)
    assert m["status"] == "paused" and "do not parse" in m["last_error"], m
    assert m["status_transitions"][-1]["to"] == "paused"
    assert m.get("reflection_log") in (None, [])  # nothing ran
    tickets = list((dvault.root / "tst" / "tickets").glob("*.md"))
    assert len(tickets) == 1 and "TST-PLAN-020" in tickets[0].read_text()
    assert broken.read_text().split("\n---\n", 1)[1] == body_before


def test_commands_write_transitions_in_the_files_words(dvault):
    plans = modulatio_vault(dvault)
    before = plans["draft"].read_text()
    assert cli(dvault, "plan", "approve", "TST-PLAN-001").code == 0
    assert cli(dvault, "plan", "abort", "TST-PLAN-002").code == 0
    m1, m2 = meta(plans["draft"]), meta(plans["draft2"])
    assert m1["status"] == "approved" and m2["status"] == "declined"
    assert [(t["to"], t["decided_by"]) for t in m1["status_transitions"]] == \
        [("approved", "command")]
    assert DECIDED_AT.fullmatch(m1["status_transitions"][0]["decided_at"])
    assert re.fullmatch(r".*\.\d{6}\+00:00", m1["approved_at"])  # the file's time style
    written = OWNED | {"approved_at"}  # plan approve writes approved_at from a draft
    assert markdown.without_keys(plans["draft"].read_text(), written) == \
        markdown.without_keys(before, written)


# --- cron ---------------------------------------------------------------------------------

FIRE_NOW = "2025-01-06T09:10:00+00:00"  # a Monday
WANT = {  # entry -> the one kickoff it makes (catch_up latest), in UTC
    "TST-C-001": "20250106T0600Z",  # daily 06:00
    "TST-C-002": "20250106T0900Z",  # weekly mon 09:00
    "TST-C-004": "20250106T0815Z",  # hourly :15
    "TST-C-005": "20250106T0900Z",  # 30m
    "TST-C-006": "20250106T0600Z",  # 6h
    "TST-C-007": "20250106T0000Z",  # 1d
}  # TST-C-003, monthly 1 07:30 from 1 February: nothing due yet


def test_imported_cron_fires_at_the_right_instants_with_three_racing_daemons(vault, tmp_path,
                                                                             wait_for):
    (vault.root / "tst" / "plans").mkdir(parents=True)
    (vault.root / "cron-config.json").write_text(json.dumps({"jobs": mv.CRON_JOBS}))
    now = datetime.fromisoformat(mv.NOW_ISO)
    dry = modulatio_import.import_cron(vault, now, dry_run=True)
    assert [c.action for c in dry] == ["create"] * 7 and not (vault.root / "tst/cron").exists()
    made = modulatio_import.import_cron(vault, now, dry_run=False)
    assert [c.path for c in made] == [f"tst/cron/TST-C-00{n}.md" for n in range(1, 8)]
    again = modulatio_import.import_cron(vault, now, dry_run=False)
    assert [c.action for c in again] == ["unchanged"] * 7  # idempotent

    barrier = tmp_path / "go"
    until = [f"--until={c}={t[:4]}-{t[4:6]}-{t[6:8]}T{t[9:11]}:{t[11:13]}:00+00:00"
             for c, t in WANT.items()]
    procs = [subprocess.Popen([sys.executable, str(HELPER), str(vault.root), "tst", FIRE_NOW,
                               f"--barrier={barrier}", *until], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    wait_for(lambda: len(list(tmp_path.glob("go.ready.*"))) == 3, timeout=30,
             what="three firers at the barrier")
    barrier.touch()
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in results]
    created = sorted(k for out, _ in results for k in json.loads(out))
    want = sorted(f"{c}-{t}" for c, t in WANT.items())
    assert created == want  # each kickoff made by exactly one of the three
    fired = Counter(e["plan"] for e in events.read(vault.events_path)
                    if e["event"] == "cron_fired")
    assert fired == Counter(want)
    assert sorted(p.stem for p in (vault.root / "tst" / "plans").glob("TST-C-*.md")) == want


def test_three_racing_daemons_fire_each_imported_job_once_at_its_latest_instant(dvault,
                                                                               daemons):
    """Real daemons on the real clock: every job of cron-config.json (each schedule form)
    was missed since its next_run in 2025, so each fires its latest due instant once."""
    from modulatio_d.core.cron import decide
    from modulatio_d.core.times import utcnow
    from modulatio_d.store.cron_entries import read_entry

    modulatio_vault(dvault)
    made = modulatio_import.import_cron(dvault.vault, utcnow(), dry_run=False)
    assert [c.action for c in made] == ["create"] * len(mv.CRON_JOBS)
    entries = [read_entry(dvault.vault, dvault.root / c.path) for c in made]

    def latest(now: datetime) -> dict[str, str]:
        out = {}
        for e in entries:
            fire = decide(e.schedule, ZoneInfo("UTC"), e.last_fired_for, e.created_at, now,
                          e.catch_up.value).fire
            out[e.id] = f"{e.id}-{fire[-1].strftime('%Y%m%dT%H%MZ')}"
        return out

    before = latest(utcnow())
    racers = [daemons("--once") for _ in range(3)]
    assert [d.wait(120) for d in racers] == [0, 0, 0], [d.log() for d in racers]
    after = latest(utcnow())
    fired = Counter(e["plan"] for e in events.read(dvault.vault.events_path)
                    if e["event"] == "cron_fired")
    assert set(fired.values()) == {1}, fired  # exactly once, whichever daemon fired it
    for e in entries:
        mine = {k for k in fired if k.startswith(e.id + "-")}
        # The instant each entry fires is its latest due one (a minute boundary crossed
        # while the daemons ran may add the next one, fired once too).
        assert before[e.id] in mine or after[e.id] in mine, (e.id, e.schedule, mine)
        assert mine <= {before[e.id], after[e.id]}, (e.id, e.schedule, mine)
        for kickoff in mine:
            assert (dvault.root / "tst" / "plans" / f"{kickoff}.md").exists()

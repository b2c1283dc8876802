"""The one zone resolver (entry, else vault config, else host) and the one cron-row builder."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from modulatio_d.core.errors import BadFile
from modulatio_d.ops.cron import entry_rows
from modulatio_d.store import config
from modulatio_d.store.zones import Zones

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def write_entry(vault, cron_id: str, timezone: str | None = None) -> None:
    zone = f"timezone: {timezone}\n" if timezone else ""
    path = vault.cron_dir("SALES") / f"{cron_id}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\nid: {cron_id}\nobjective: Report\nschedule: \"0 6 * * *\"\n{zone}"
                    "created_at: 2025-01-01T00:00:00Z\n---\n")


def test_the_entry_zone_then_the_vault_config_then_the_host(vault):
    assert Zones.read(vault, TOKYO).resolve(None) == TOKYO
    assert Zones.read(vault, TOKYO).source(None) == "host"
    vault.config_path.write_text("timezone: Europe/Berlin\n")
    zones = Zones.read(vault, TOKYO)
    assert zones.resolve(None) == ZoneInfo("Europe/Berlin") and zones.source(None) == "vault"
    assert zones.resolve("UTC") == ZoneInfo("UTC") and zones.source("UTC") == "entry"


def test_a_refused_config_holds_back_only_entries_without_their_own_zone(vault):
    vault.config_path.write_text("timezone: Europe/Berln\n")
    zones = Zones.read(vault, TOKYO)
    with pytest.raises(BadFile, match=r"config\.yaml: timezone: unknown time zone"):
        zones.resolve(None)
    assert zones.resolve("America/New_York") == ZoneInfo("America/New_York")


def test_rows_read_the_vault_config_once_for_all_entries(vault, monkeypatch):
    for n in range(1, 6):
        write_entry(vault, f"SALES-C-00{n}")
    loads = []
    real = config.load
    monkeypatch.setattr(config, "load", lambda path: loads.append(path) or real(path))
    rows = entry_rows(vault, NOW, TOKYO)
    assert len(rows) == 5 and len(loads) == 1
    assert {(r["timezone"], r["timezone_from"]) for r in rows} == {("Asia/Tokyo", "host")}
    assert rows[0]["next_fire"] == "2025-01-02T06:00:00+09:00"


def test_rows_tell_refusals_instead_of_listing_them_when_asked(vault):
    write_entry(vault, "SALES-C-001")
    write_entry(vault, "SALES-C-002", timezone="UTC")
    (vault.cron_dir("SALES") / "SALES-C-003.md").write_text("---\nid: SALES-C-003\n---\n")
    vault.config_path.write_text("timezone: Nowhere/Atall\n")
    listed = {r["id"]: r for r in entry_rows(vault, NOW, TOKYO)}
    assert listed["SALES-C-003"]["valid"] is False and "objective" in listed["SALES-C-003"]["error"]
    assert listed["SALES-C-001"]["valid"] is False
    assert "vault config is refused" in listed["SALES-C-001"]["error"]
    assert listed["SALES-C-002"]["valid"] is True and listed["SALES-C-002"]["timezone"] == "UTC"
    told = []
    rows = entry_rows(vault, NOW, TOKYO, refused=lambda *a: told.append(a[:3]))
    assert [r["id"] for r in rows] == ["SALES-C-001", "SALES-C-002"]
    assert told == [(str(vault.config_path), None, "config"),
                    (str(vault.cron_dir("SALES") / "SALES-C-003.md"), "SALES", "cron")]

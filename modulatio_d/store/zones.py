"""Which time zone a cron entry fires in: its own, else the vault config's, else the host's.

Every place that turns an entry into times (the daemons' firing, `cron list`,
`cron next`, `cron add`, `status`) resolves the zone through `Zones.resolve`.
A `Zones` is read once per use (the config file once, not per entry): the
vault config's `timezone` is checked when read, and a config that is refused
holds back only the entries without a zone of their own (resolve raises the
config's BadFile for them). The host's zone is $TZ when it names a zone or a
tzfile, else /etc/localtime, else UTC; callers pass the environment in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo

from modulatio_d.core import cron
from modulatio_d.core.errors import BadFile
from modulatio_d.store import config
from modulatio_d.store.vault import Vault


def host_zone(
    environ: Mapping[str, str] | None = None, localtime: str = "/etc/localtime"
) -> tzinfo:
    """The host's zone: $TZ if it names a zone or a tzfile, else /etc/localtime, else UTC.

    A TZ holding a POSIX rule ("CET-1CEST,M3.5.0,M10.5.0/3") is not understood and
    is passed over. A tzfile is named by the zone its path (after symlinks) ends in.
    """
    tz = (os.environ if environ is None else environ).get("TZ", "").removeprefix(":")
    for candidate in ([tz] if tz else []) + [localtime]:
        if not candidate.startswith("/"):
            zone = cron.find_zone(candidate)
        else:
            zone = cron.find_zone(os.path.realpath(candidate).partition("/zoneinfo/")[2])
            if zone is None:
                try:
                    with open(candidate, "rb") as f:
                        zone = ZoneInfo.from_file(f, key=candidate)
                except (OSError, ValueError):
                    pass
        if zone is not None:
            return zone
    return UTC


def vault_zone(vault: Vault) -> str | None:
    """The vault config's `timezone`, checked; raises BadFile naming the config."""
    cfg = config.load(vault.config_path)
    if cfg.timezone is not None:
        try:
            cron.parse_zone(cfg.timezone)
        except ValueError as e:
            raise BadFile(vault.config_path, f"timezone: {e}") from None
    return cfg.timezone


@dataclass(frozen=True)
class Zones:
    host: tzinfo
    vault: str | None = None
    """The vault config's timezone, checked."""
    error: BadFile | None = None
    """Why the vault config was refused; entries without their own zone wait for it."""

    @classmethod
    def read(cls, vault: Vault, host: tzinfo) -> Zones:
        try:
            return cls(host, vault_zone(vault))
        except BadFile as e:
            return cls(host, None, e)

    def resolve(self, own: str | None) -> tzinfo:
        """The zone of an entry whose own `timezone` is `own` (None: it has none)."""
        if own is not None:
            return cron.parse_zone(own)
        if self.error is not None:
            raise self.error
        return cron.parse_zone(self.vault) if self.vault else self.host

    def source(self, own: str | None) -> str:
        """Where resolve(own) takes the zone from: entry, vault or host."""
        return "entry" if own else "vault" if self.vault else "host"

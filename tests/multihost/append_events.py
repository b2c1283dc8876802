"""Run on a host by test_soak_multihost.py: append N events to VAULT's events.jsonl
through the daemon's EventLog, as fast as it can (argv: VAULT N)."""

import sys
from pathlib import Path

from modulatio_d.store.events import EventLog
from modulatio_d.store.vault import Vault

vault = Vault(Path(sys.argv[1]))
log = EventLog(vault.events_path)
for i in range(int(sys.argv[2])):
    log("soak_line", index=i, pad="x" * 150)

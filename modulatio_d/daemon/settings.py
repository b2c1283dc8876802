"""The daemon's config as read: `.modulatio/config.yaml` watched by its stat.

`Settings.load(current)` reads the config when it changed (or on SIGHUP, which
sets `reload`). It names the trusted group, so it is judged by the policy it
declares; a config that is bad or not trusted is refused (`file_refused`, once
per version) and the one before it stays in force, with its policy. At start
there is none before it: the defaults, with the vault folder's group, except
that no plan is admitted when the refused file may set a capacity (a cheap look
for a `capacity:` line): never "unlimited" by accident (daemon/admission.py).
For the same reason a config that is suddenly empty while a capacity is in
force is taken for an editor's in-place save half done: it applies (the
defaults: no limit) only once unchanged for SETTLE_S (store/vault.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from modulatio_d.core.capacity import Capacity
from modulatio_d.core.errors import BadFile
from modulatio_d.store import config, fs, refusals, trust
from modulatio_d.store.refusals import Refusals
from modulatio_d.store.vault import Vault

log = logging.getLogger("modulatio.daemon")


class Settings:
    def __init__(self, vault: Vault, events: Callable[..., None], checks: trust.Checks):
        self.vault = vault
        self.trust = checks
        self.refusals = Refusals(vault, events, "config")
        self.reload = False  # SIGHUP: read the config again at the next tick
        self._sig: tuple | None = None

    def load(self, current: config.Config) -> config.Config:
        """The config in force from now: the file's, or `current` when it is unchanged
        or refused."""
        path = self.vault.config_path
        try:
            st: os.stat_result | None = fs.stat_of(path)
            sig: tuple | None = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                 st.st_uid, st.st_gid, st.st_mode)
        except FileNotFoundError:
            st, sig = None, None
        except OSError as e:  # .modulatio/ is a link, say: load() refuses it below
            st, sig = None, ("unusable", str(e))
        if self.reload:
            self.reload = False
            log.info("SIGHUP: reading the config again (%s)", path)
            self.refusals.clear(path)  # tell again what is still wrong
        elif sig == self._sig and self.trust.policy is not None:
            return current
        if st is not None and st.st_size == 0 and current.capacity.limited \
                and not refusals.settled(path, time.time()):
            return current  # an in-place save half done? looked at again next tick
        self._sig = sig
        try:
            loaded = config.load(path)
            policy = trust.Policy.build(self.vault.root, loaded.trusted_group,
                                        config_path=path)
            problem = policy.problem(path, st) if st is not None else None
            if problem is not None:
                raise problem
        except BadFile as e:  # the previous config stays in force
            self.refusals.tell(path, None, e, sig)
            return self._keep(current)
        except Exception as e:  # noqa: BLE001 (unreadable, or a reader's bug: refused too)
            log.error("reading %s raised %s", path, e, exc_info=e)
            self.refusals.tell(path, None, BadFile(
                path, f"could not be read ({type(e).__name__}: {e})"), sig)
            return self._keep(current)
        self.refusals.clear(path)
        self.trust.use(policy, loaded.trusted_group)
        return loaded

    def _keep(self, current: config.Config) -> config.Config:
        """A refused config leaves the one before it; at start, see the docstring."""
        if self.trust.policy is None:
            self.trust.use(trust.Policy.build(self.vault.root, None), None)
            if config.sets_capacity(self.vault.config_path):
                log.error("the config is refused and may set a capacity: no plan is "
                          "started until it is fixed")
                return config.Config(capacity=Capacity(closed=True))
        return current

"""Trust checks, like sshd's StrictModes: whose files the daemon may act on.

Writing a file the daemon executes from is running commands as the daemon's
user (docs/security.md). So before a daemon acts on a file it checks, from the
stat it already has, that nobody outside the people it trusts could have
written it. The policy (`Policy`):

- the daemon's user, root, and the members of the vault's trusted group are
  trusted: `trusted_group` in .modulatio/config.yaml, else the group of the
  vault's root folder. Members are the group's listed members and the users
  whose primary group it is;
- a file or folder is trusted when its owner is trusted and nobody else can
  write it: not writable by others, and writable by its group only when that
  group is the trusted group;
- above the vault root (its parent folders, up to `/`) the same, except that a
  sticky folder may be writable by anyone (like /tmp: nobody can rename or
  delete what others put there), as for sshd.

Checked: at daemon start the vault root, every folder above it and
`.modulatio/` (a failure stops the start); every tick the root and
`.modulatio/`, each served project folder and its plans/, cron/, tickets/ and triggers/
(a failure skips what is inside, told once); each plan, cron entry, ticket and
the config when the daemon (re)reads it, on the stat the scan has anyway. A
refusal names the file, its owner or mode, and the command that fixes it; it
goes through store/refusals.py like any refused file (log, events.jsonl,
`status`), and `validate` lists the same problems.

Root: a daemon refuses to run as root unless `--allow-root` or
MODULATIO_ALLOW_ROOT=1 says so (containers and CI, where root is the only
user); it then warns in its log and `status` shows it.

Not covered: ACLs (a vault with ACL entries granting others write access is
the operator's decision), and the code a step imports or runs from elsewhere
(its `run:` command, a `call:` module, the project's own scripts).
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from modulatio_d.core.errors import BadFile
from modulatio_d.store.refusals import Refusals

ALLOW_ROOT_ENV = "MODULATIO_ALLOW_ROOT"
ROOT_REFUSED = (
    "refusing to run the daemon as root: every step would run as root, so whoever can "
    "write the vault would run commands as root. Run it as the vault's user (a system "
    "user such as `modulatio`, see docs/systemd.md), or, where root is the only user "
    "(a container, CI), pass --allow-root or set MODULATIO_ALLOW_ROOT=1")
ROOT_WARNING = (
    "running as root (allowed by --allow-root or MODULATIO_ALLOW_ROOT): every step runs "
    "as root, and whoever can write the vault runs commands as root")
REFRESH_S = 60.0
"""How often a daemon reads the trusted group's members again (people join groups)."""


def root_allowed(flag: bool, environ: Mapping[str, str]) -> bool:
    return flag or environ.get(ALLOW_ROOT_ENV, "").strip().lower() in ("1", "yes", "true")


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _members(gid: int) -> frozenset[int]:
    uids = {p.pw_uid for p in pwd.getpwall() if p.pw_gid == gid}
    try:
        listed = grp.getgrgid(gid).gr_mem
    except KeyError:
        listed = []
    for name in listed:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            pass
    return frozenset(uids)


@dataclass(frozen=True)
class Policy:
    uid: int
    """The daemon's user."""
    gid: int
    """The vault's trusted group."""
    members: frozenset[int]
    """The users in the trusted group."""

    @classmethod
    def build(cls, root: Path | str, group: str | None = None, uid: int | None = None,
              config_path: Path | str | None = None) -> Policy:
        """The policy of the vault at `root`: `group` is config's trusted_group (None:
        the root folder's group); `uid` the daemon's user (None: this process's)."""
        if group is None:
            gid = os.stat(root).st_gid
        else:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise BadFile(config_path or Path(root, ".modulatio", "config.yaml"),
                              f"trusted_group: there is no group {group!r} on this host", None,
                              f"create it (`groupadd {group}`) or name an existing one") from None
        return cls(os.geteuid() if uid is None else uid, gid, _members(gid))

    def trusts(self, uid: int) -> bool:
        return uid == self.uid or uid == 0 or uid in self.members

    def problem(self, path: Path | str, st: os.stat_result, above: bool = False) -> BadFile | None:
        """Why `path` (with stat `st`) is not to be trusted; None when it is.
        `above`: a folder above the vault root, where a sticky folder may be writable
        by anyone."""
        mode = stat.S_IMODE(st.st_mode)
        sticky_above = above and stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX
        if self.trusts(st.st_uid) and not (mode & stat.S_IWOTH and not sticky_above) and \
                not (mode & stat.S_IWGRP and st.st_gid != self.gid and not sticky_above):
            return None  # the common case, told apart before any name lookup (getgrgid
            # costs tens of microseconds, and a first scan judges every file of the vault)
        reasons: list[str] = []
        fixes: list[str] = []
        quoted = shlex.quote(str(path))
        group = group_name(self.gid)
        if not self.trusts(st.st_uid):
            owner = user_name(st.st_uid)
            reasons.append(f"owned by {owner} (uid {st.st_uid}), who is neither the daemon's "
                           f"user ({user_name(self.uid)}), root, nor in the vault's trusted "
                           f"group {group}")
            fixes.append(f"`chown {shlex.quote(user_name(self.uid))} {quoted}` (as root) or "
                         f"remove it if {owner} may not run commands as "
                         f"{user_name(self.uid)}")
        if mode & stat.S_IWOTH and not sticky_above:
            reasons.append(f"writable by everyone (mode {mode:04o})")
            fixes.append(f"`chmod o-w {quoted}`")
        if mode & stat.S_IWGRP and st.st_gid != self.gid and not sticky_above:
            reasons.append(f"writable by group {group_name(st.st_gid)} (mode {mode:04o}), "
                           f"which is not the vault's trusted group {group}")
            fixes.append(f"`chgrp {shlex.quote(group)} {quoted}` or `chmod g-w {quoted}`")
        if not reasons:
            return None
        problem = BadFile(path, "not trusted: " + "; ".join(reasons), None,
                          "fix: " + ", and ".join(fixes))
        # what was judged, for the file_refused event (store/refusals.py)
        problem.event_fields = {"uid": st.st_uid, "gid": st.st_gid, "mode": st.st_mode}
        return problem


def check_vault(root: Path, meta: Path, policy: Policy) -> list[BadFile]:
    """The problems of the vault root, every folder above it, and `.modulatio/`."""
    problems = []
    for folder in reversed(Path(root).parents):
        p = policy.problem(folder, os.stat(folder), above=True)
        if p is not None:
            problems.append(p)
    return problems + _judged(policy, (root, meta))


def _judged(policy: Policy, paths) -> list[BadFile]:
    """The problems of each path there is (one gone meanwhile has none); a path may come
    as (path, its lstat from a folder listing), used when it is not a link."""
    found = []
    for path in paths:
        try:
            if isinstance(path, tuple):
                path, st = path
                if stat.S_ISLNK(st.st_mode):
                    st = os.stat(path)
            else:
                st = os.stat(path)
        except OSError:
            continue
        problem = policy.problem(path, st)
        if problem is not None:
            found.append(problem)
    return found


def vault_policy(vault, problems: list[BadFile]) -> Policy:
    """The policy a daemon run by the owner of the vault folder would apply (what
    `validate` and `doctor` judge by: the user of the documented set-ups). A
    trusted_group that does not exist is a problem, and the folder's group is used."""
    from modulatio_d.store import config

    owner = os.stat(vault.root).st_uid
    try:
        group = config.load(vault.config_path).trusted_group
    except BadFile:
        group = None  # the config's own problem is told by whoever reads it
    try:
        return Policy.build(vault.root, group, owner, config_path=vault.config_path)
    except BadFile as e:
        problems.append(e)
        return Policy.build(vault.root, None, owner)


def vault_problems(vault, files: bool = True, listing=None) -> list[BadFile]:
    """What a daemon of the vault folder's owner would refuse: the folders above the
    vault, the vault, `.modulatio/` and the config; with `files`, also each project
    folder with its plans/, cron/, tickets/ and triggers/ and every `*.md` in them.
    `listing(project, kind)`: the folder's entries (default `vault.files`)."""
    listing = listing or vault.files
    problems: list[BadFile] = []
    policy = vault_policy(vault, problems)
    problems += check_vault(vault.root, vault.meta, policy)
    paths: list = [vault.config_path]
    if files:
        for project in vault.projects():
            paths.append(vault.project_dir(project))
            for kind in ("plans", "cron", "tickets", "triggers"):  # what daemons act on
                paths.append(vault.project_dir(project) / kind)
                paths += sorted((e.path, e.st) for e in listing(project, kind))
    return problems + _judged(policy, paths)


class Checks:
    """A daemon's trust checks: the policy in force, and the folders it refused.

    `generation` moves on whenever the policy changes (a new trusted_group, a
    person added to the group, the root folder's group changed): callers that
    keep verdicts about files by stat signature drop them then.
    """

    def __init__(self, root: Path, events: Callable[..., None], vault,
                 monotonic: Callable[[], float], uid: int | None = None):
        self.root = root
        self.uid = uid
        self.monotonic = monotonic
        self.refusals = Refusals(vault, events, "folder")
        self.policy: Policy | None = None
        self.group: str | None = None
        self.generation = 0
        self._built = float("-inf")

    def use(self, policy: Policy, group: str | None) -> None:
        if policy != self.policy:
            self.generation += 1
        self.policy, self.group, self._built = policy, group, self.monotonic()

    def refresh(self) -> None:
        """Read the group's members (and the root's group) again every REFRESH_S."""
        if self.policy is not None and self.monotonic() - self._built < REFRESH_S:
            return
        try:
            self.use(Policy.build(self.root, self.group, self.uid), self.group)
        except (BadFile, OSError):
            self._built = self.monotonic()  # keep the last one; the config check tells why

    def file_problem(self, path: Path | str, st: os.stat_result) -> BadFile | None:
        return self.policy.problem(path, st) if self.policy is not None else None

    def folder_ok(self, path: Path, project: str | None, kind: str = "folder") -> bool:
        """Whether a folder may be acted in (a missing one may: nothing is inside);
        a refusal is told once per owner and mode."""
        try:
            st = os.stat(path)
        except OSError:
            return True
        problem = self.file_problem(path, st)
        if problem is None:
            self.refusals.clear(path)
            return True
        self.refusals.tell(path, project, problem,
                           (st.st_ino, st.st_uid, st.st_gid, st.st_mode, self.generation),
                           kind=kind)
        return False

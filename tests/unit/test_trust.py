"""The trust policy (store/trust.py) on its own: who is trusted, what mode is too open,
the message and the fix it gives; the daemon's refusals through it, told once.

Stats are made up (os.stat_result of a tuple) so every owner and mode can be
judged without other users; tests/e2e/test_users_sharing_a_vault.py does it
with real ones.
"""

from __future__ import annotations

import grp
import os
import stat
import subprocess
from datetime import UTC, datetime

import pytest

from modulatio_d.core.errors import BadFile
from modulatio_d.ops.init import init
from modulatio_d.store import config, trust

DAEMON, PERSON, OUTSIDER = 1001, 1002, 1003
GROUP, FOREIGN = 2001, 2002
POLICY = trust.Policy(uid=DAEMON, gid=GROUP, members=frozenset({DAEMON, PERSON}))


def st(mode: int, uid: int = PERSON, gid: int = GROUP, kind: int = stat.S_IFREG):
    return os.stat_result((kind | mode, 1, 1, 1, uid, gid, 10, 0, 0, 0))


@pytest.mark.parametrize("owner", [DAEMON, PERSON, 0])
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o660, 0o644, 0o400])
def test_trusted_owners_with_closed_modes_pass(owner, mode):
    assert POLICY.problem("/v/P/plans/x.md", st(mode, owner)) is None


def test_a_group_writable_file_of_the_trusted_group_passes_a_foreign_one_does_not():
    assert POLICY.problem("/v/x.md", st(0o664, gid=GROUP)) is None
    assert POLICY.problem("/v/x.md", st(0o644, gid=FOREIGN)) is None  # only readable: fine
    problem = POLICY.problem("/v/x.md", st(0o664, gid=FOREIGN))
    assert problem is not None
    assert f"writable by group {trust.group_name(FOREIGN)} (mode 0664), which is not the " \
           f"vault's trusted group {trust.group_name(GROUP)}" in problem.reason
    assert f"`chgrp {trust.group_name(GROUP)} /v/x.md` or `chmod g-w /v/x.md`" in problem.hint


def test_an_outsiders_file_is_refused_with_the_chown_that_fixes_it():
    problem = POLICY.problem("/v/my plan.md", st(0o600, OUTSIDER))
    assert problem is not None and problem.reason.startswith("not trusted: owned by ")
    assert f"(uid {OUTSIDER}), who is neither the daemon's user " \
           f"({trust.user_name(DAEMON)}), root, nor in the vault's trusted group" in problem.reason
    assert f"`chown {trust.user_name(DAEMON)} '/v/my plan.md'` (as root)" in problem.hint
    assert str(problem).startswith("/v/my plan.md: not trusted: owned by")


def test_world_writable_is_refused_even_for_the_daemons_own_file_and_folder():
    for kind in (stat.S_IFREG, stat.S_IFDIR):
        problem = POLICY.problem("/v/.modulatio", st(0o777, DAEMON, kind=kind))
        assert problem is not None
        assert "writable by everyone (mode 0777)" in problem.reason
        assert problem.hint == "fix: `chmod o-w /v/.modulatio`"


def test_every_problem_of_one_file_is_told_at_once():
    problem = POLICY.problem("/v/x.md", st(0o666, OUTSIDER, FOREIGN))
    assert problem.reason.count(";") == 2  # owner, everyone, group
    assert problem.hint.count("`") == 8


def test_a_sticky_world_writable_folder_is_fine_above_the_vault_only():
    tmp = st(0o1777, 0, 0, kind=stat.S_IFDIR)
    assert POLICY.problem("/tmp", tmp, above=True) is None
    assert POLICY.problem("/tmp", tmp) is not None  # inside the vault it is not
    assert POLICY.problem("/srv", st(0o777, 0, 0, kind=stat.S_IFDIR), above=True) is not None
    assert POLICY.problem("/tmp/x", st(0o1777, OUTSIDER, 0, kind=stat.S_IFDIR),
                          above=True) is not None  # sticky, but whose?


def test_root_and_the_daemons_user_are_trusted_whatever_the_group():
    lonely = trust.Policy(uid=DAEMON, gid=GROUP, members=frozenset())
    assert lonely.trusts(0) and lonely.trusts(DAEMON) and not lonely.trusts(PERSON)


def test_the_policy_of_a_real_vault_defaults_to_the_folders_group(tmp_path):
    vault = init(tmp_path / "v")
    policy = trust.Policy.build(vault.root)
    assert (policy.uid, policy.gid) == (os.geteuid(), os.stat(vault.root).st_gid)
    assert trust.check_vault(vault.root, vault.meta, policy) == []
    os.chmod(vault.meta, 0o777)
    (problem,) = trust.check_vault(vault.root, vault.meta, policy)
    assert problem.path == vault.meta and "mode 0777" in problem.reason
    subprocess.run(problem.hint.split("`")[1], shell=True, check=True)  # the fix, as given
    assert trust.check_vault(vault.root, vault.meta, policy) == []


def test_a_trusted_group_that_does_not_exist_refuses_the_config(tmp_path):
    vault = init(tmp_path / "v")
    with pytest.raises(BadFile, match="trusted_group: there is no group 'no-such-grp-x'"):
        trust.Policy.build(vault.root, "no-such-grp-x", config_path=vault.config_path)
    name = grp.getgrgid(os.getegid()).gr_name
    assert trust.Policy.build(vault.root, name).gid == os.getegid()


@pytest.mark.parametrize("line, ok", [("trusted_group: staff", True),
                                      ("trusted_group: [a]", False),
                                      ("trusted_group: ''", False)])
def test_the_config_names_the_trusted_group(tmp_path, line, ok):
    path = tmp_path / "config.yaml"
    path.write_text(line + "\n")
    if ok:
        assert config.load(path).trusted_group == "staff"
    else:
        with pytest.raises(BadFile, match="trusted_group must be the name of a group"):
            config.load(path)


@pytest.mark.parametrize("flag, env, allowed", [
    (False, {}, False), (True, {}, True), (False, {"MODULATIO_ALLOW_ROOT": "1"}, True),
    (False, {"MODULATIO_ALLOW_ROOT": "0"}, False), (False, {"MODULATIO_ALLOW_ROOT": ""}, False),
])
def test_root_is_allowed_only_when_asked(flag, env, allowed):
    assert trust.root_allowed(flag, env) is allowed


def test_the_checks_tell_a_refused_folder_once_and_again_after_a_fix(vault):
    told = []
    now = [0.0]
    guard = trust.Checks(vault.root, lambda event, **f: told.append(f), vault, lambda: now[0])
    guard.use(trust.Policy.build(vault.root), None)
    folder = vault.root / "P"
    folder.mkdir()
    assert guard.folder_ok(folder, "P") and told == []
    os.chmod(folder, 0o777)
    assert not guard.folder_ok(folder, "P") and not guard.folder_ok(folder, "P")
    assert [(f["kind"], f["path"]) for f in told] == [("folder", "P")]
    assert "chmod o-w" in guard.refusals.current[str(folder)]
    os.chmod(folder, 0o755)
    assert guard.folder_ok(folder, "P") and guard.refusals.current == {}
    os.chmod(folder, 0o777)
    assert not guard.folder_ok(folder, "P") and len(told) == 2  # news again


def test_a_new_policy_moves_the_generation_and_members_are_read_again(vault):
    now = [0.0]
    guard = trust.Checks(vault.root, lambda *a, **k: None, vault, lambda: now[0])
    guard.refresh()
    first = guard.generation
    guard.refresh()
    assert guard.generation == first  # same policy, within REFRESH_S: not even rebuilt
    guard.use(trust.Policy(guard.policy.uid, guard.policy.gid, frozenset({12345})), None)
    assert guard.generation == first + 1
    now[0] += trust.REFRESH_S + 1
    guard.refresh()  # the members as the system has them again
    assert guard.generation == first + 2 and 12345 not in guard.policy.members


def test_the_scan_refuses_an_untrusted_plan_once_and_takes_it_when_fixed(vault):
    from modulatio_d.daemon.scan import Scanner

    told = []

    def record(event, **fields):
        told.append(fields)

    guard = trust.Checks(vault.root, record, vault, lambda: 0.0)
    guard.use(trust.Policy.build(vault.root), None)
    scanner = Scanner(vault, None, record, trust=guard)
    plans = vault.plans_dir("P")
    plans.mkdir(parents=True)
    path = plans / "P-P-001.md"
    path.write_text("---\nid: P-P-001\nstatus: approved\nsub_objectives: [a]\n---\n")
    os.chmod(path, 0o666)
    now = datetime.now(UTC)
    assert scanner.scan(now) == [] and scanner.scan(now) == []
    assert [f["reason"] for f in told] == ["not trusted: writable by everyone (mode 0666)"]
    os.chmod(path, 0o644)
    assert [c.path for c in scanner.scan(now)] == [path]
    os.chmod(plans, 0o777)  # the folder: nothing inside is offered
    assert scanner.scan(now) == []
    assert told[-1]["kind"] == "folder" and told[-1]["path"] == "P/plans"


def test_doctor_says_whether_a_daemon_would_start(tmp_path):
    from modulatio_d.ops.doctor.probe import Probe
    from modulatio_d.ops.doctor.trust import check_trust

    vault = init(tmp_path / "v")
    probe = Probe(vault, "h", "h-1", None, None, None)
    (row,) = check_trust(probe)
    assert row.verdict == 0 and row.check == "trust"
    assert "may be written only by" in row.detail
    os.chmod(vault.meta, 0o777)
    (row,) = check_trust(probe)
    assert row.verdict == 2 and row.detail == f"{vault.meta}: not trusted: writable by " \
                                              f"everyone (mode 0777)"
    assert row.hint == f"fix: `chmod o-w {vault.meta}`"


def test_init_group_shares_the_whole_vault_with_the_group(tmp_path):
    from modulatio_d.core.errors import UsageError

    name = grp.getgrgid(os.getegid()).gr_name
    vault = init(tmp_path / "v", example=True, group=name)
    assert config.load(vault.config_path).trusted_group == name
    for folder, _, files in os.walk(vault.root):
        for path in [folder, *(os.path.join(folder, f) for f in files)]:
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            assert st.st_gid == os.getegid() and mode & 0o007 == 0, path
            if stat.S_ISDIR(st.st_mode):
                assert mode & (stat.S_ISGID | 0o070) == stat.S_ISGID | 0o070, path
            else:
                assert mode & 0o060 == 0o060, path
    assert trust.check_vault(vault.root, vault.meta, trust.Policy.build(vault.root, name)) == []
    with pytest.raises(UsageError, match="there is no group 'no-such-grp-x'"):
        init(tmp_path / "w", group="no-such-grp-x")
    assert not (tmp_path / "w").exists()

"""A vault shared by people and a service user, with REAL Unix users (issue 10).

As root (CI runs the tests as root), the module makes users and groups with
useradd/groupadd and removes them afterwards: a service user (made by the
recipe of docs/systemd.md itself, run as it is written there), two people in
its group (ana, ben) and one outsider (eve). Commands and the daemon run as
them through setpriv, with the umask the recipe asks for (0007).

- the recipe's vault: owned by the service user, setgid, group-only;
- the workflow: ana creates and approves a plan, the service user's daemon
  runs it, ben pauses and resumes it, everyone in the group reads the
  outcome, eve reads nothing;
- the trust refusals: a plan owned by an outsider, a group-writable plan of a
  foreign group, a world-writable .modulatio/; each message's fix, run as
  given, makes the daemon take the file;
- root: a daemon refuses root without the opt-in; root's commands in another
  user's vault warn.

Python for the users: the interpreter running the tests may live where they
cannot reach it (a pyenv under /root); then the system python3 of the same
minor version runs this checkout with the venv's packages on PYTHONPATH. No
such interpreter, not root, or no setpriv/useradd: the module is skipped,
saying why.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from waiting import wait_for

import modulatio_d
from modulatio_d.store import events as events_mod

pytestmark = pytest.mark.timeout(180)
REPO = Path(__file__).resolve().parents[2]
RECIPE_MARK = "<!-- group-recipe -->"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root, to create users (CI runs the tests as root)"
    for tool in ("useradd", "userdel", "groupadd", "groupdel", "usermod", "setpriv", "runuser",
                 "install"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


if _missing():
    pytestmark = [pytestmark, pytest.mark.skip(reason=_missing())]


@dataclass
class Site:
    base: Path
    vault: Path
    service: str
    ana: str
    ben: str
    eve: str
    bin: Path
    env: dict[str, str] = field(default_factory=dict)
    daemons: list[subprocess.Popen] = field(default_factory=list)

    def run(self, user: str, *argv: object, cwd: Path | None = None, umask: str = "0007",
            check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        """argv as `user` (its groups from the group database), with `umask`."""
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--",
               "/bin/sh", "-c", f'umask {umask}; exec "$@"', "sh", *map(str, argv)]
        done = subprocess.run(cmd, cwd=cwd or self.base, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check:
            assert done.returncode == 0, (argv, done.stdout, done.stderr)
        return done

    def modulatio(self, user: str, *argv: object, **kw) -> subprocess.CompletedProcess:
        return self.run(user, self.bin / "modulatio", *argv, "--vault", self.vault, **kw)

    def start_daemon(self, log: Path, *args: str) -> subprocess.Popen:
        cmd = ["setpriv", f"--reuid={self.service}", f"--regid={self.service}", "--init-groups",
               "--", "/bin/sh", "-c", 'umask 0007; exec "$@"', "sh", str(self.bin / "modulatio"),
               "daemon", "--vault", str(self.vault), "--tick-seconds", "0.3", *args]
        with open(log, "ab") as err:
            proc = subprocess.Popen(cmd, cwd=self.base, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
        self.daemons.append(proc)
        return proc

    def stop_daemons(self) -> None:
        for proc in self.daemons:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.daemons.clear()

    def plan_text(self, plan_id: str) -> str:
        project = plan_id.split("-")[0]
        return (self.vault / project / "plans" / f"{plan_id}.md").read_text()

    def status_of(self, plan_id: str) -> str | None:
        m = re.search(r"^status: *(\w+)", self.plan_text(plan_id), re.M)
        return m.group(1) if m else None

    def events(self, name: str) -> list[dict]:
        return [e for e in events_mod.read(self.vault / ".modulatio" / "events.jsonl")
                if e.get("event") == name]


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def _python_for(user: str, base: Path) -> tuple[str, str]:
    """(an interpreter `user` can run this checkout with, the PYTHONPATH it needs)."""
    site = os.pathsep.join([str(REPO)] + [p for p in sys.path if p.endswith("site-packages")])
    probe = "import modulatio_d, ruamel.yaml, watchdog.observers, croniter, frontmatter"
    candidates = [(sys.executable, ""),
                  (f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}", site)]
    for python, path in candidates:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "PYTHONPATH": path}
        try:
            # Through sh: setpriv looks its program up while it still holds root's
            # capabilities, so only a program exec'd after it tells what the user can run.
            done = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}",
                                   "--clear-groups", "/bin/sh", "-c", 'exec "$@"', "sh", python,
                                   "-c", probe], env=env,
                                  capture_output=True, timeout=60, cwd=base, check=False)
        except OSError:
            continue
        if done.returncode == 0:
            return python, path
    pytest.skip(f"no Python that user {user} can run with this checkout's packages "
                f"(tried {[c[0] for c in candidates]})")


def _recipe(site: Site, people: str) -> str:
    text = (REPO / "docs" / "systemd.md").read_text()
    block = text[text.index(RECIPE_MARK):]
    block = block[block.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    values = {"VAULT": str(site.vault), "SERVICE": site.service, "PEOPLE": people}
    for name, value in values.items():
        block, n = re.subn(rf"^{name}=.*$", f"{name}='{value}'", block, count=1, flags=re.M)
        assert n == 1, f"the recipe in docs/systemd.md no longer starts with {name}="
    return block


@pytest.fixture(scope="module")
def site():
    tag = "".join(secrets.choice("abcdefghijkmnpqrstuvwxyz") for _ in range(5))
    base = Path(tempfile.mkdtemp(prefix="modulatio-users-", dir="/tmp"))
    os.chmod(base, 0o755)
    s = Site(base=base, vault=base / "srv" / "vault", service=f"md{tag}svc", ana=f"md{tag}ana",
             ben=f"md{tag}ben", eve=f"md{tag}eve", bin=base / "bin")
    people = [s.ana, s.ben, s.eve]
    try:
        for name in people:
            _sh("useradd", "--no-create-home", "--user-group", "--shell", "/bin/sh", name)
        python, path = _python_for(s.eve, base)
        s.bin.mkdir()
        wrapper = s.bin / "modulatio"
        wrapper.write_text("#!/bin/sh\n" + (f"export PYTHONPATH='{path}'\n" if path else "")
                           + f"exec '{python}' -P -m modulatio_d \"$@\"\n")
        wrapper.chmod(0o755)
        s.env = {"PATH": f"{s.bin}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(base),
                 "LANG": "C.UTF-8"}
        # The recipe of docs/systemd.md, as written, with our names in its first lines.
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", _recipe(s, f"{s.ana} {s.ben}")],
                              env=s.env, cwd=base, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"the recipe failed:\n{done.stdout}\n{done.stderr}"
        yield s
    finally:
        s.stop_daemons()
        for name in [*people, s.service]:
            subprocess.run(["userdel", name], capture_output=True, check=False)
            subprocess.run(["groupdel", name], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _stop_daemons_after_each_test(request):
    yield
    if "site" in request.fixturenames:
        request.getfixturevalue("site").stop_daemons()


def _tree(root: Path) -> list[tuple[Path, os.stat_result]]:
    out = [(root, os.lstat(root))]
    for folder, dirs, files in os.walk(root):
        out += [(Path(folder) / n, os.lstat(Path(folder) / n)) for n in [*dirs, *files]]
    return out


def test_the_recipe_makes_a_vault_of_the_service_user_shared_with_its_group(site):
    import grp
    import pwd

    svc = pwd.getpwnam(site.service)
    group = grp.getgrnam(site.service)
    assert set(group.gr_mem) == {site.ana, site.ben}
    for path, st in _tree(site.vault):
        assert st.st_gid == group.gr_gid, path
        assert stat.S_IMODE(st.st_mode) & 0o007 == 0, path  # nothing for others
        if stat.S_ISDIR(st.st_mode):
            assert stat.S_IMODE(st.st_mode) & (stat.S_ISGID | 0o070) == stat.S_ISGID | 0o070
    assert os.stat(site.vault).st_uid == svc.pw_uid
    config = (site.vault / ".modulatio" / "config.yaml").read_text()
    assert f"trusted_group: {site.service}" in config
    valid = site.modulatio(site.ana, "validate")
    assert valid.returncode == 0, valid.stdout + valid.stderr


PLAN = """---
id: {id}
title: Refused until fixed
status: approved
sub_objectives:
  - run: "touch ran-{id}"
---
"""


def _refused(site: Site, plan_id: str):
    def probe():
        return [e for e in site.events("file_refused")
                if e.get("path", "").endswith(f"{plan_id}.md")]
    return probe


def _fix(site: Site, user: str, hint: str) -> None:
    """Run the first command the refusal's message gives, as `user`."""
    command = re.search(r"`([^`]+)`", hint).group(1)
    site.run(user, "/bin/sh", "-c", command, check=True)


@pytest.mark.parametrize("case", ["owned by an outsider", "group-writable, foreign group"])
def test_an_untrusted_plan_is_refused_once_with_its_fix(site, tmp_path, case):
    import grp
    import pwd

    project = site.vault / "T"
    site.run(site.ana, "mkdir", "-p", project / "plans", check=True)
    plan_id = "T-P-001" if case == "owned by an outsider" else "T-P-002"
    path = project / "plans" / f"{plan_id}.md"
    path.write_text(PLAN.format(id=plan_id))
    if case == "owned by an outsider":
        os.chown(path, pwd.getpwnam(site.eve).pw_uid, grp.getgrnam(site.service).gr_gid)
        os.chmod(path, 0o640)
        fixer, expect = "root", f"owned by {site.eve} (uid {pwd.getpwnam(site.eve).pw_uid})"
    else:
        os.chown(path, pwd.getpwnam(site.ana).pw_uid, grp.getgrnam(site.ana).gr_gid)
        os.chmod(path, 0o664)
        fixer = site.ana
        expect = (f"writable by group {site.ana} (mode 0664), which is not the vault's trusted "
                  f"group {site.service}")
    log = tmp_path / "daemon.log"
    site.start_daemon(log)
    (refusal,) = wait_for(_refused(site, plan_id), 30, "the refusal", diag=log.read_text)
    assert expect in refusal["reason"] and refusal["kind"] == "plan"
    status = site.modulatio(site.ben, "status")
    assert f"T/plans/{plan_id}.md: not trusted: {expect}" in status.stdout, status.stdout
    assert site.status_of(plan_id) == "approved"  # not run, not changed
    assert f"{plan_id}.md: error: not trusted" in site.modulatio(site.ana, "validate").stdout

    hint = [line for line in log.read_text().splitlines() if "not trusted" in line][0]
    if fixer == "root":
        command = re.search(r"`([^`]+)`", hint).group(1)
        subprocess.run(["/bin/sh", "-c", command], check=True)
    else:
        _fix(site, fixer, hint)
    wait_for(lambda: site.status_of(plan_id) == "completed", 30, "the fixed plan to run",
             diag=log.read_text)
    site.stop_daemons()
    assert len(_refused(site, plan_id)()) == 1  # told once, though ticks went by
    assert (project / f"ran-{plan_id}").exists()


def test_a_world_writable_modulatio_folder_stops_the_daemon_at_start(site, tmp_path):
    meta = site.vault / ".modulatio"
    os.chmod(meta, 0o2777)
    try:
        log = tmp_path / "daemon.log"
        daemon = site.start_daemon(log)
        assert daemon.wait(timeout=60) == 1
        text = log.read_text()
        assert f"refused {meta}: not trusted: writable by everyone (mode 2777)" in text \
            and f"`chmod o-w {meta}`" in text and "refusing to start: 1 folder(s)" in text, text
        status = site.modulatio(site.ben, "status")
        assert ".modulatio: not trusted: writable by everyone" in status.stdout, status.stdout
        valid = site.modulatio(site.ana, "validate")
        assert valid.returncode == 1 and f"{meta}: error: not trusted" in valid.stdout
        _fix(site, site.service, text[text.index("fix: "):])
        assert stat.S_IMODE(os.stat(meta).st_mode) & 0o002 == 0
        status = site.modulatio(site.ben, "status")  # fixed: no longer listed
        assert ".modulatio: not trusted" not in status.stdout, status.stdout
        again = site.start_daemon(log, "--once")
        assert again.wait(timeout=60) == 0, log.read_text()
    finally:
        os.chmod(meta, 0o2770)


def test_stop_as_a_person_leaves_the_service_users_daemon_alone(site, tmp_path):
    log = tmp_path / "daemon.log"
    daemon = site.start_daemon(log)
    beat = site.vault / ".modulatio" / "daemons" / f"{os.uname().nodename}.{daemon.pid}.json"
    wait_for(beat.exists, 30, "the daemon's heartbeat", diag=log.read_text)
    denied = site.modulatio(site.ana, "stop", "--all", "--timeout", "1")
    assert denied.returncode == 1
    assert f"daemon {daemon.pid} runs as another user: not permitted to signal it" \
        in denied.stdout, denied.stdout + denied.stderr
    assert daemon.poll() is None
    stopped = site.modulatio(site.service, "stop", "--all")
    assert stopped.returncode == 0 and f"daemon {daemon.pid} stopped" in stopped.stdout, \
        stopped.stdout + stopped.stderr
    assert daemon.wait(timeout=30) == 0


def test_root_commands_in_another_users_vault_say_so(site):
    done = subprocess.run([site.bin / "modulatio", "status", "--vault", site.vault],
                          env=site.env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"modulatio: warning: running as root in a vault owned by {site.service}" \
        in done.stderr


def test_a_root_daemon_refuses_to_start_without_the_opt_in(tmp_path):
    from modulatio_d.ops.init import init

    vault = init(tmp_path / "v")
    env = {k: v for k, v in os.environ.items() if k != "MODULATIO_ALLOW_ROOT"}
    argv = [sys.executable, "-m", "modulatio_d", "daemon", "--once", "--vault", str(vault.root)]
    refused = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.startswith("modulatio: refusing to run the daemon as root")
    assert "--allow-root or set MODULATIO_ALLOW_ROOT=1" in refused.stderr
    assert not vault.events_path.exists()  # it did nothing at all
    for extra, more_env in ((["--allow-root"], {}), ([], {"MODULATIO_ALLOW_ROOT": "1"})):
        ran = subprocess.run(argv + extra, env={**env, **more_env}, capture_output=True,
                             text=True, timeout=60)
        assert ran.returncode == 0, ran.stderr
        assert "WARNING modulatio.daemon: running as root (allowed by --allow-root" in ran.stderr


def test_status_marks_a_daemon_running_as_root(tmp_path):
    from modulatio_d.ops.init import init

    vault = init(tmp_path / "v")
    daemon = subprocess.Popen([sys.executable, "-m", "modulatio_d", "daemon", "--vault",
                               str(vault.root), "--tick-seconds", "0.3", "--allow-root"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(vault.daemons_dir.glob("*.json")) if vault.daemons_dir.exists()
                 else False, 30, "the heartbeat")
        shown = subprocess.run([sys.executable, "-m", "modulatio_d", "status", "--vault",
                                str(vault.root)], capture_output=True, text=True, timeout=60)
        assert "WARNING: runs as root (--allow-root)" in shown.stdout, shown.stdout
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


# Last: the people's own files (lock files, events.jsonl, records) must be usable by
# the daemon and the other people: modes from the umask (store/fs/).
def test_people_and_the_service_user_share_the_work_and_outsiders_see_nothing(site, tmp_path):
    made = site.modulatio(site.ana, "plan", "new", "W", "Shared work", "--step",
                          "until [ -e go ]; do sleep 0.05; done", "--objective", "Summarise it",
                          check=True)
    plan_id = made.stdout.strip()
    assert plan_id == "W-P-001"
    site.modulatio(site.ana, "plan", "approve", plan_id, check=True)
    log = tmp_path / "daemon.log"
    daemon = site.start_daemon(log)
    wait_for(lambda: site.status_of(plan_id) == "executing", 20, "the service user's claim",
             diag=log.read_text)
    paused = site.modulatio(site.ben, "plan", "pause", plan_id)
    assert paused.returncode == 0, paused.stderr
    site.run(site.ana, "touch", site.vault / "W" / "go", check=True)
    wait_for(lambda: site.status_of(plan_id) == "paused", 30, "the pause, after the step",
             diag=log.read_text)
    resumed = site.modulatio(site.ben, "plan", "resume", plan_id)
    assert resumed.returncode == 0, resumed.stderr
    wait_for(lambda: site.status_of(plan_id) == "completed", 30, "the plan to complete",
             diag=log.read_text)
    site.stop_daemons()
    assert daemon.returncode == 0, log.read_text()
    assert "Permission denied" not in log.read_text()

    runs = site.vault / "W" / "plans" / f"{plan_id}.runs"
    for person in (site.ana, site.ben, site.service):
        shown = site.modulatio(person, "plan", "show", plan_id)
        assert shown.returncode == 0 and "status:   completed" in shown.stdout, shown.stderr
        out = site.run(person, "cat", runs / "0002-01.log", site.vault / ".modulatio" / "events.jsonl",
                       site.vault / "W" / "plans" / f"{plan_id}.usage.jsonl")
        assert out.returncode == 0 and "mock agent: done: Summarise it" in out.stdout, out.stderr
        status = site.modulatio(person, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["refused"] == []
    for argv in (["ls", site.vault], ["cat", site.vault / "W" / "plans" / f"{plan_id}.md"],
                 ["cat", runs / "0002-01.log"], [site.bin / "modulatio", "status", "--vault",
                                              site.vault]):
        denied = site.run(site.eve, *argv)
        assert denied.returncode != 0 and (
            "Permission denied" in denied.stderr or "not a folder" in denied.stderr), argv
    # What this workflow made (the T project of the refusal tests is theirs, 0664 on purpose)
    for path, st in _tree(site.vault / "W") + _tree(site.vault / ".modulatio"):
        assert stat.S_IMODE(st.st_mode) & 0o007 == 0, path  # still nothing for others


assert modulatio_d  # the package the users' Python must find too

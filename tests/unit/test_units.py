"""The shipped systemd units as package data, rendered for this install, and
`modulatio systemd-unit` in this process (systemd's own analyzer checks them in
tests/e2e/test_systemd_units.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from cli_runner import CliResult, run_cli

from modulatio_d.core.errors import NotFound, UsageError
from modulatio_d.ops.init import init
from modulatio_d.ops.units import (
    UNIT_NAMES,
    USER_FAILS,
    USER_IGNORED,
    pool_unit,
    render_unit,
    unit_text,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "packaging" / "systemd"


# --- rendering --------------------------------------------------------------------------------

def test_render_fills_python_and_vault_and_keeps_the_rest(tmp_path):
    template = unit_text(False)
    text = render_unit(template, python_exe="/opt/py/bin/python3", vault="/data/v", user=False)
    assert ("ExecStart=/opt/py/bin/python3 -P -m modulatio_d daemon --vault ${MODULATIO_VAULT} "
            "$MODULATIO_DAEMON_ARGS") in text.splitlines()
    for line in ("Environment=MODULATIO_VAULT=/data/v", "ReadWritePaths=/data/v",
                 "RequiresMountsFor=/data/v"):
        assert line in text.splitlines()
    assert "/srv/modulatio/vault" not in text and "/usr/bin/env" not in text
    assert len(text.splitlines()) == len(template.splitlines())


def test_the_pool_unit_runs_n_workers_and_signals_the_supervisor_alone():
    single = render_unit(unit_text(False), python_exe="/usr/bin/python3", vault="/v", user=False)
    text = pool_unit(single, 4)
    lines = text.splitlines()
    assert ("ExecStart=/usr/bin/python3 -P -m modulatio_d daemon --workers 4 --vault "
            "${MODULATIO_VAULT} $MODULATIO_DAEMON_ARGS") in lines
    assert "KillMode=mixed" in lines and "KillMode=control-group" not in lines
    assert "every process of the unit gets SIGTERM" not in text
    assert [x for x in lines if not x.startswith(("ExecStart", "KillMode", "#"))] == \
        [x for x in single.splitlines() if not x.startswith(("ExecStart", "KillMode", "#"))]


def test_render_escapes_specifiers_and_variables_in_the_python_path():
    text = render_unit(unit_text(False), python_exe="/opt/50%$HOME py/python", vault="/v",
                       user=False)
    assert 'ExecStart="/opt/50%%$$HOME py/python" -P -m modulatio_d daemon' in text


@pytest.mark.parametrize("instances", [False, True], ids=["single", "template"])
def test_user_render_leaves_out_what_a_user_manager_refuses_or_skips(instances):
    text = render_unit(unit_text(instances), python_exe="/usr/bin/python3",
                       vault="/home/a/vault", user=True)
    keys = {line.split("=", 1)[0] for line in text.splitlines()
            if "=" in line and not line.startswith("#")}
    assert not keys & (USER_FAILS | USER_IGNORED)
    assert "network-online.target" not in text
    assert "WantedBy=default.target" in text and "multi-user.target" not in text
    assert "writable home" not in text  # the comment went with StateDirectory=
    for kept in ("Type=notify", "WatchdogSec=60s", "NoNewPrivileges=yes",
                 "SystemCallFilter=@system-service", "Environment=MODULATIO_VAULT=/home/a/vault"):
        assert kept in text.splitlines()
    assert text.startswith("# Rendered for a user manager")


@pytest.mark.parametrize("vault", ["relative/vault", "/v/with\"quote", "/v/with'quote",
                                   "/v/back\\slash", "/v/new\nline"])
def test_render_refuses_vault_paths_a_unit_cannot_carry(vault):
    with pytest.raises(UsageError):
        render_unit(unit_text(False), python_exe="/usr/bin/python3", vault=vault, user=False)


def test_render_refuses_a_relative_python():
    with pytest.raises(UsageError):
        render_unit(unit_text(False), python_exe="python3", vault="/v", user=False)


def test_render_refuses_text_that_is_not_a_modulatio_template():
    with pytest.raises(ValueError, match="ReadWritePaths"):
        render_unit(unit_text(False).replace("ReadWritePaths=", "#"), python_exe="/p",
                    vault="/v", user=False)


def test_unit_text_reads_the_package_data_that_the_checkout_links_to():
    package_units = ROOT / "modulatio_d" / "units"
    assert SHIPPED.is_symlink() and SHIPPED.resolve() == package_units.resolve()
    for instances in (False, True):
        assert unit_text(instances) == (package_units / UNIT_NAMES[instances]).read_text()


def test_unit_text_reads_the_given_folder_and_names_a_missing_unit(tmp_path):
    (tmp_path / "units").mkdir()
    (tmp_path / "units" / UNIT_NAMES[False]).write_text("# a unit\n")
    assert unit_text(False, folder=tmp_path / "units") == "# a unit\n"
    with pytest.raises(NotFound, match="modulatio-daemon@.service"):
        unit_text(True, folder=tmp_path / "units")


def test_single_unit_and_template_differ_only_where_they_must():
    # Two copies of one unit drift apart; only these lines may differ.
    def settings(name: str) -> list[str]:
        lines = (SHIPPED / name).read_text().splitlines()
        return [line for line in lines if not line.startswith("#")
                and not line.startswith(("Description=", "SyslogIdentifier="))]

    assert settings(UNIT_NAMES[False]) == settings(UNIT_NAMES[True])
    template = (SHIPPED / UNIT_NAMES[True]).read_text()
    assert "SyslogIdentifier=modulatio-daemon@%i" in template
    assert "Description=modulatio daemon %i:" in template


# --- `modulatio systemd-unit`: the unit that runs this daemon ---------------------------------

def systemd_unit(*argv: str, cwd, env=None) -> CliResult:
    return run_cli("systemd-unit", *argv, cwd=cwd, env=env)


def tmp_warning(vault) -> str:
    tmp = "/var/tmp" if str(vault).startswith("/var/tmp/") else "/tmp"
    return (f"modulatio: warning: the vault {vault} is under {tmp}, and the unit's "
            f"PrivateTmp=yes gives the daemon a {tmp} of its own, where this vault is not: "
            f"move the vault (for instance to /srv/modulatio/vault) or drop PrivateTmp=yes\n")


def test_systemd_unit_warns_about_a_vault_under_tmp(tmp_path):
    """PrivateTmp=yes gives the daemon an empty /tmp: a vault there is invisible to it. A
    user unit has no PrivateTmp (a user manager cannot make the namespace): no warning."""
    for folder in ("/tmp", "/var/tmp"):
        path = Path(folder) / f"modulatio-unit-test-{os.getpid()}"
        code, text, err = systemd_unit("--vault", str(path), cwd=tmp_path)
        assert code == 0 and "PrivateTmp=yes" in text.splitlines()
        assert err.endswith(tmp_warning(path)), err
        code, text, err = systemd_unit("--vault", str(path), "--user", cwd=tmp_path)
        assert "PrivateTmp=yes" not in text.splitlines() and "warning" not in err
    code, _, err = systemd_unit("--vault", "/srv/modulatio/vault", cwd=tmp_path)
    assert code == 0 and "warning" not in err


def test_systemd_unit_fills_in_this_python_and_the_vault(tmp_path):
    vault = init(tmp_path / "my vault")
    code, text, err = systemd_unit("--vault", "my vault", cwd=tmp_path)
    # The one thing on stderr: tmp_path is under /tmp, which PrivateTmp=yes hides.
    under_tmp = str(vault.root).startswith(("/tmp/", "/var/tmp/"))
    assert code == 0 and err == (tmp_warning(tmp_path / "my vault") if under_tmp else "")
    lines = text.splitlines()
    python = os.path.abspath(sys.executable)
    assert (f"ExecStart={python} -P -m modulatio_d daemon --vault ${{MODULATIO_VAULT}} "
            f"$MODULATIO_DAEMON_ARGS") in lines
    assert f'Environment="MODULATIO_VAULT={vault.root}"' in lines
    assert f'ReadWritePaths="{vault.root}"' in lines
    assert "Type=notify" in lines and "User=modulatio" in lines


def test_systemd_unit_user_and_instances_and_the_vault_found_from_here(tmp_path):
    vault = init(tmp_path / "v")
    code, text, _ = systemd_unit("--user", "--instances", cwd=vault.root / ".modulatio")
    assert code == 0
    assert text.startswith("# Rendered for a user manager")
    assert "modulatio daemon %i" in text
    assert not any(line.startswith("User=") for line in text.splitlines())
    assert f"Environment=MODULATIO_VAULT={vault.root}" in text.splitlines()
    code, text, _ = systemd_unit(cwd=tmp_path, env={"MODULATIO_VAULT": str(vault.root)})
    assert code == 0 and f"ReadWritePaths={vault.root}" in text.splitlines()


def test_systemd_unit_without_a_vault(tmp_path):
    code, _, err = systemd_unit(cwd=tmp_path)
    assert code == 2 and "no vault found" in err
    code, text, err = systemd_unit("--vault", str(tmp_path / "later"), cwd=tmp_path)
    assert code == 0 and "is not a vault yet" in err
    assert f"Environment=MODULATIO_VAULT={tmp_path}/later" in text.splitlines()
    code, text, err = systemd_unit(cwd=tmp_path, env={"MODULATIO_VAULT": str(tmp_path / "l2")})
    assert code == 0 and "is not a vault yet" in err
    assert f"Environment=MODULATIO_VAULT={tmp_path / 'l2'}" in text.splitlines()

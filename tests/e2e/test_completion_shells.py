"""The completion scripts in real shells, with the installed `modulatio` console script:
bash sources its script and completes a plan id through COMP_WORDS; fish (when
installed) completes through `complete -C`; zsh (when installed) parses its script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modulatio_d.ops.init import init

pytestmark = pytest.mark.timeout(60)
BIN = Path(sys.executable).parent


def environment(vault_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODULATIO_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["MODULATIO_VAULT"] = str(vault_root)
    return env


@pytest.fixture
def sales(tmp_path):
    if shutil.which("modulatio", path=str(BIN)) is None:
        pytest.skip(f"no modulatio console script in {BIN} (install the package)")
    vault = init(tmp_path / "vault")
    env = environment(vault.root)
    for argv in (["plan", "new", "SALES", "Follow up"], ["plan", "new", "SALES", "Call back",
                                                         "--approve"],
                 ["plan", "new", "SALES", "Offer"]):
        subprocess.run(["modulatio", *argv], env=env, check=True, capture_output=True,
                       timeout=30)
    return vault


def shell(argv: list[str], vault, script: str) -> str:
    r = subprocess.run([*argv, script], env=environment(vault.root), capture_output=True,
                       text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_bash_completes_plan_ids_from_the_vault(sales):
    out = shell(["bash", "-c"], sales, r"""
source <(modulatio completion bash)
complete -p modulatio
COMP_WORDS=(modulatio plan approve SALES-P-00); COMP_CWORD=3
_modulatio
printf 'approve:%s\n' "${COMPREPLY[@]}"
COMP_WORDS=(modulatio --vault "$MODULATIO_VAULT" plan show ""); COMP_CWORD=5
_modulatio
printf 'show:%s\n' "${COMPREPLY[@]}"
COMP_WORDS=(modulatio sta); COMP_CWORD=1
_modulatio
printf 'command:%s\n' "${COMPREPLY[@]}"
""")
    assert out.splitlines() == [
        "complete -F _modulatio modulatio",
        "approve:SALES-P-001", "approve:SALES-P-003",  # SALES-P-002 is approved already
        "show:SALES-P-001", "show:SALES-P-002", "show:SALES-P-003",
        "command:status"]


def test_bash_leaves_paths_to_compgen(sales, tmp_path):
    (tmp_path / "vault-two").mkdir()
    out = shell(["bash", "-c"], sales, f"""
source <(modulatio completion bash)
cd {tmp_path}
COMP_WORDS=(modulatio init vault-t); COMP_CWORD=2
_modulatio
printf '%s\\n' "${{COMPREPLY[@]}}"
""")
    assert out.splitlines() == ["vault-two"]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_plan_ids_with_their_titles(sales):
    out = shell(["fish", "-c"], sales, """
modulatio completion fish | source
complete -C 'modulatio plan approve SALES-P-00'
""")
    assert out.splitlines() == ["SALES-P-001\tdraft: Follow up", "SALES-P-003\tdraft: Offer"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_parses(sales, tmp_path):
    script = tmp_path / "_modulatio"
    script.write_text(subprocess.run(["modulatio", "completion", "zsh"], capture_output=True,
                                     text=True, check=True, timeout=30,
                                     env=environment(sales.root)).stdout)
    r = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True, timeout=30,
                       check=False)
    assert (r.returncode, r.stderr) == (0, "")

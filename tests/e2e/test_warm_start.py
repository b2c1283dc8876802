"""A warm command imports only what it needs: `status`, `metrics` and `plan list` on a
vault whose files the per-user row cache already holds parse nothing, so they do not
import the plan reader (core/plan.py, the YAML readers), which was a third of their
start-up at 10,000 plans (docs/benchmarks.md, "Commands' start-up")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from vault_texts import plan_text

RUN = r"""
import io, json, sys
from modulatio_d.store import rowcache
rowcache.RACY_S = -1.0  # the files were written just now: cache them anyway
from modulatio_d.cli.main import Context, main
from pathlib import Path
out = io.StringIO()
code = main(sys.argv[1:], Context(environ={}, cwd=Path.cwd(), out=out, err=sys.stderr))
print(json.dumps({"code": code, "out": out.getvalue(),
                  "loaded": sorted(m for m in sys.modules if m in LOOKED_FOR)}))
"""
LOOKED_FOR = {"yaml", "frontmatter", "modulatio_d.core.plan", "modulatio_d.core.markdown",
              "modulatio_d.store.plan_file", "modulatio_d.store.config",
              "modulatio_d.store.pause"}


def run(vault, *argv: str) -> dict:
    code = RUN.replace("LOOKED_FOR", repr(LOOKED_FOR))
    result = subprocess.run([sys.executable, "-c", code, "--vault", str(vault.root), *argv],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"], ["metrics"],
                                  ["plan", "list"], ["plan", "list", "--json"],
                                  ["plan", "list", "--status", "paused"]])
def test_a_warm_command_does_not_import_the_plan_reader(vault, argv):
    for n, status in enumerate(["draft", "paused", "completed", "failed", "approved"]):
        path = vault.plans_dir("P") / f"P-P-00{n}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(plan_text(f"P-P-00{n}", status, "  - A step\n"))
    vault.config_path.write_text("capacity: {vault: 2}\n")
    cold = run(vault, *argv)
    assert cold["code"] == 0 and cold["loaded"]  # the first run parses
    warm = run(vault, *argv)
    assert warm["code"] == 0 and warm["loaded"] == []
    if argv[0] == "plan":  # the same rows (status and metrics hold the time they were made)
        assert warm["out"] == cold["out"]
    elif argv == ["status", "--json"]:
        assert json.loads(warm["out"]) | {"now": 0} == json.loads(cold["out"]) | {"now": 0}

"""Build hook: ship vault-example/ and the systemd units inside the package.

They live at the top of the repo for people; `modulatio init --example` and
`modulatio systemd-unit` need them in an installed package, so build_py copies
them to modulatio_d/example/ and modulatio_d/units/ in the build tree.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.lock", "*.usage.jsonl", "*.runs",
                              "events.jsonl", "daemons", "state")


class BuildWithData(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "modulatio_d"
        shutil.copytree(HERE / "vault-example", target / "example", dirs_exist_ok=True,
                        ignore=SKIP)
        units = target / "units"
        units.mkdir(parents=True, exist_ok=True)
        for unit in (HERE / "packaging" / "systemd").glob("*.service"):
            shutil.copy2(unit, units / unit.name)


setup(cmdclass={"build_py": BuildWithData})

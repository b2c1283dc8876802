"""The read-only commands on a big vault, beside reading every plan file once (issue 12, 4).

Measured in the same run, on the same vault (bench/vaultgen.py: BENCH_PLANS plans in 10
projects, in every status a daemon does not claim; the config names the steps' agent):
- each command as a user runs it (`python -m modulatio_d --vault V ...`, a new process,
  output to /dev/null, page cache warm):
  cold: the per-user row cache (store/rowcache.py) emptied first, so every file is read
        (the first run after an upgrade, or on a new machine);
  warm: run again with the cache the cold run left (nothing changed in between);
- floor: a new process of the same interpreter that lists every project's plans/ and
  reads every plan file once (interpreter start-up included, as a command's is).
  "in process" is that read alone, timed inside this process, for reference.
- parse floor: the same, and every plan's frontmatter loaded with libyaml (PyYAML's
  CSafeLoader): what stands below any cold command that parses every plan.
Each figure is printed as wall clock and as CPU time (user + system, from wait4), both
beside the floor's of the same run: on a loaded machine the CPU ratio is the steadier.
Target (issue 12): every command within 2x of the floor, at 10,000 and 100,000 plans.

BENCH_PLANS (10000) and BENCH_ROUNDS (3) change the sizes. BENCH_VAULT_CACHE=<folder>
keeps the generated vault for the next run and the other benchmarks (vaultgen.vault_for);
its config gets `agents: {writer: {use: mock}}` (the plans' agent), written once.
BENCH_COLD=0 leaves out the cold runs (warm only: each command's cache is filled by one
untimed run first). BENCH_COMPARE=<folder holding another modulatio_d package> (an
export of an older commit, say) runs every command from that tree too, alternating with
this one in each round, with its own cache: "before" and "after" under the same load.
Commands run with bytecode caching on (as an installed package has it) even when the
calling shell sets PYTHONDONTWRITEBYTECODE; a first untimed run writes it. They run in
a scratch folder with PYTHONPATH naming the tree, so neither the caller's folder nor the
installed package decides which code runs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bytecode import compile_package  # noqa: E402
from vaultgen import vault_for  # noqa: E402

PLANS = int(os.environ.get("BENCH_PLANS", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
COLD = os.environ.get("BENCH_COLD", "1") != "0"
TREES = {"this": str(Path(__file__).resolve().parent.parent)}
if os.environ.get("BENCH_COMPARE"):
    TREES["compare"] = str(Path(os.environ["BENCH_COMPARE"]).resolve())

COMMANDS = [
    ("plan list", ["plan", "list"]),
    ("plan list --status paused", ["plan", "list", "--status", "paused"]),
    ("plan list --json", ["plan", "list", "--json"]),
    ("validate", ["validate"]),
    ("status", ["status"]),
    ("metrics", ["metrics"]),
    ("ticket list", ["ticket", "list"]),
    ("cron list", ["cron", "list"]),
]

_PLAN_FILES = """
import os, sys

def plan_files(root):
    for p in sorted(os.scandir(root), key=lambda e: e.name):
        if p.is_dir() and not p.name.startswith("."):
            try:
                found = sorted(os.scandir(os.path.join(p.path, "plans")), key=lambda e: e.name)
            except FileNotFoundError:
                continue
            yield from (e.path for e in found if e.name.endswith(".md"))
"""
_READ_ALL = _PLAN_FILES + """
def read_all(root):
    for path in plan_files(root):
        with open(path, "rb") as f:
            f.read()
"""
_NS: dict = {}
exec(_READ_ALL, _NS)  # the same code, timed in this process too

_PARSE_ALL = _PLAN_FILES + """
import yaml

def parse_all(root):
    load, loader = yaml.load, yaml.CSafeLoader
    for path in plan_files(root):
        with open(path, "rb") as f:
            text = f.read().decode()
        end = text.find("\\n---", 3)
        try:
            load(text[4:end], Loader=loader)
        except yaml.YAMLError:
            pass
"""
"""The parse floor: what a cold command cannot go below with PyYAML's C loader (libyaml),
the fastest YAML reader here: every plan's frontmatter loaded once, in a new process, no
checks, no line numbers, no YAML 1.2 resolution (core/fastyaml.py adds those)."""


CONFIG = "agents:\n  writer: {use: mock}\n"


def vault_of(plans: int, tmp: Path) -> Path:
    t = time.perf_counter()
    root = vault_for(plans, tmp)
    config = root / ".modulatio" / "config.yaml"
    if config.read_text() != CONFIG:
        config.write_text(CONFIG)
    if time.perf_counter() - t > 0.5:
        print(f"made {root} ({plans:,} plans) in {time.perf_counter() - t:.1f} s", flush=True)
    newest = max(e.stat().st_mtime for e in os.scandir(root / "P00" / "plans"))
    time.sleep(max(0.0, newest + 2.5 - time.time()))  # files older than the row cache's
    return root  # racy window (rowcache.RACY_S), else it keeps nothing


CPU: dict[str, list[float]] = {}
"""CPU time (user + system) of each run, by what was run: under load a ratio of CPU times
moves far less than one of wall clocks."""


def run(argv: list[str], env: dict[str, str], what: str = "") -> tuple[float, int]:
    t = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env,
                             cwd=env["XDG_CACHE_HOME"])
        _, status, usage = os.wait4(p.pid, 0)
        took = time.perf_counter() - t
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            err.seek(0)
            sys.exit(f"{' '.join(argv)}: exit {code}\n{err.read().decode()[-2000:]}")
    CPU.setdefault(what, []).append(usage.ru_utime + usage.ru_stime)
    return took, code


def read_in_process(root: Path) -> float:
    t = time.perf_counter()
    _NS["read_all"](str(root))
    return time.perf_counter() - t


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench(vault_of(PLANS, Path(tmp)))


def bench(root: Path) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="modulatio-bench-cache-"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    envs = {}
    for tree, source in TREES.items():
        (scratch / tree).mkdir()
        envs[tree] = {**env, "XDG_CACHE_HOME": str(scratch / tree), "PYTHONPATH": source}
    me = [sys.executable, "-m", "modulatio_d", "--vault", str(root)]
    floor_argv = [sys.executable, "-c", _READ_ALL + "\nread_all(sys.argv[1])\n", str(root)]
    parse_argv = [sys.executable, "-c", _PARSE_ALL + "\nparse_all(sys.argv[1])\n", str(root)]
    try:
        for tree_env in envs.values():
            run([*me, "status"], tree_env)  # untimed: bytecode written, page cache warm
        run(floor_argv, envs["this"])
        CPU.clear()
        floors, parses, in_proc = [], [], []
        times: dict[str, dict[str, list[float]]] = {
            f"{tree} {n}": {"cold": [], "warm": []} for tree in TREES for n, _ in COMMANDS}
        codes: dict[str, int] = {}
        for _ in range(ROUNDS):
            floors.append(run(floor_argv, envs["this"], "floor")[0])
            parses.append(run(parse_argv, envs["this"], "parse")[0])
            in_proc.append(read_in_process(root))
            for name, args in COMMANDS:
                for tree, tree_env in envs.items():
                    what = f"{tree} {name}"
                    if COLD:
                        shutil.rmtree(scratch / tree / "modulatio", ignore_errors=True)
                        took, codes[what] = run([*me, *args], tree_env, f"{what} cold")
                        times[what]["cold"].append(took)
                    elif not times[what]["warm"]:
                        codes[what] = run([*me, *args], tree_env)[1]  # the cache filled
                    times[what]["warm"].append(run([*me, *args], tree_env, f"{what} warm")[0])
        floor, parse = statistics.median(floors), statistics.median(parses)
        cpu = {k: statistics.median(v) for k, v in CPU.items()}
        load = os.getloadavg()[0]
        print(f"{PLANS:,} plans, median of {ROUNDS} rounds, load {load:.1f}. Floor: a new "
              f"process reading every plan file once {floor:.3f} s, CPU {cpu['floor']:.3f} s "
              f"(the read alone, in process: {statistics.median(in_proc):.3f} s). Parse "
              f"floor (libyaml's CSafeLoader on every frontmatter, a new process): "
              f"{parse:.3f} s = {parse / floor:.2f}x, CPU {cpu['parse']:.3f} s = "
              f"{cpu['parse'] / cpu['floor']:.2f}x")
        for tree, source in TREES.items():
            if len(TREES) > 1:
                print(f"{tree}: {source}")
            print(f"{'command':<28}{'cold':>9}{'warm':>9}{'cold/floor':>12}{'warm/floor':>12}"
                  f"{'CPU cold/floor':>16}{'CPU warm/floor':>16}  exit")
            for name, _ in COMMANDS:
                what = f"{tree} {name}"
                warm = statistics.median(times[what]["warm"])
                cold, ratio, cpu_ratio = f"{'-':>9}", f"{'-':>12}", f"{'-':>16}"  # not run
                if COLD:
                    took = statistics.median(times[what]["cold"])
                    cold, ratio = f"{took:>8.3f}s", f"{took / floor:>11.2f}x"
                    cpu_ratio = f"{cpu[what + ' cold'] / cpu['floor']:>15.2f}x"
                print(f"{name:<28}{cold}{warm:>8.3f}s{ratio}{warm / floor:>11.2f}x"
                      f"{cpu_ratio}{cpu[what + ' warm'] / cpu['floor']:>15.2f}x  {codes[what]}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    compile_package()  # time the bytecode a user imports (bench/bytecode.py)
    main()

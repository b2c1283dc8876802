"""The package's shape, read from its source with ast (nothing is imported):

- layers: an import points down or within a layer, never up (order core < store
  < daemon < ops < web < cli: web/ is the HTTP adapter over ops/, started by the
  `serve` command; nothing below cli imports it, so the daemon never loads it). modulatio_d/__init__.py (the version) is below everything;
  modulatio_d/__main__.py above everything;
- no import cycle between modules (lazy imports inside functions count too: a
  cycle broken only by import order is still a cycle to a reader);
- no module over MAX_LINES lines;
- no class whose constructor takes over MAX_ARGS arguments (its __init__, or the
  init fields of a dataclass). Frozen dataclasses are exempt: they are records, one
  field per key of a file (a plan has 19), built by one parser, not objects wired up
  from collaborators; grouping collaborators into one is how a big constructor is fixed;
- core/ imports only what CORE_MAY_IMPORT allows: no file, process, clock or
  environment access there, so it can be tested with plain values.

KNOWN lists today's violations, each to be fixed; the test also
fails when an entry is no longer a violation, so that KNOWN only ever shrinks.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import modulatio_d

PACKAGE = Path(modulatio_d.__file__).resolve().parent
ROOT_NAME = "modulatio_d"
LAYERS = [{"core"}, {"store"}, {"daemon"}, {"ops"}, {"web"}, {"cli"}]
MAX_LINES = 400
MAX_ARGS = 8
# What core/ may import. Pure computation only: no os, sys, time, subprocess, socket,
# fcntl, select, signal, shutil, tempfile, logging handlers... Also allowed:
# pathlib, for Path values that name a file in an error (core never opens one);
# zoneinfo, whose zone data is read-only reference data like a table of constants;
# io, for in-memory text buffers; the YAML, frontmatter and cron parsers.
CORE_MAY_IMPORT = {
    "__future__", "collections", "collections.abc", "dataclasses", "datetime", "difflib",
    "hashlib",  # pure: digests of steps (core/digest.py)
    "enum", "functools", "io", "itertools", "json", "math", "pathlib", "re", "string",
    "textwrap", "typing", "zoneinfo",
    "croniter", "frontmatter", "ruamel.yaml", "ruamel.yaml.error", "ruamel.yaml.events",
    "yaml",  # PyYAML: libyaml's C parser, no I/O (core/fastyaml.py)
}

# Being fixed on branches h1/h2 (runner split, claim module, clocks; core/store/ops
# de-duplication). Remove each entry with its fix: the last test fails until then.
KNOWN: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @property
    def layer(self) -> str | None:
        """core, store, ... for modules in a layer; None for the root's own modules."""
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None


def modules() -> dict[str, Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        folders = path.parent.relative_to(PACKAGE).parents  # not example/ or other data
        if not all((PACKAGE / f / "__init__.py").is_file()
                   for f in [path.parent.relative_to(PACKAGE), *folders]):
            continue
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        out[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return out


MODULES = modules()


def imported_names(module: Module) -> list[str]:
    """Every module `module` imports, anywhere in it, absolute and resolved: for
    `from X import y`, X.y when that is a module of the package, else X."""
    out = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.name if module.is_package else module.name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append(sub if sub in MODULES else base)
    return out


def internal_imports(module: Module) -> set[str]:
    return {n for n in _imports_of(module.name) if n == ROOT_NAME or n.startswith(ROOT_NAME + ".")
            and n != module.name}


@functools.cache
def _imports_of(name: str) -> tuple[str, ...]:
    return tuple(imported_names(MODULES[name]))


def rank(name: str) -> tuple[int, str | None]:
    """(height, layer) of a module: the root package -1, a layer its index, __main__ top."""
    module = MODULES[name]
    if module.layer is not None:
        heights = [i for i, layer in enumerate(LAYERS) if module.layer in layer]
        assert heights, f"{module.layer}/ is in no layer: add it to LAYERS (and docs/architecture.md)"
        return heights[0], module.layer
    return (-1, None) if name == ROOT_NAME else (len(LAYERS), None)


@functools.cache
def layer_violations() -> set[tuple[str, str]]:
    found = set()
    for name, module in MODULES.items():
        height, layer = rank(name)
        for target in internal_imports(module):
            t_height, t_layer = rank(target)
            if t_height > height:
                found.add(("upward import", f"{name} -> {target}"))
            elif t_height == height and layer != t_layer:
                found.add(("sideways import", f"{name} -> {target}"))
    return found


def import_graph() -> dict[str, list[str]]:
    return {name: sorted(internal_imports(m) & MODULES.keys()) for name, m in MODULES.items()}


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


@functools.cache
def cycle_violations() -> set[tuple[str, str]]:
    return {("import cycle", " <-> ".join(c)) for c in cycles(import_graph())}


@functools.cache
def length_violations() -> set[tuple[str, str]]:
    return {("too long", name) for name, m in MODULES.items()
            if len(m.path.read_text(encoding="utf-8").splitlines()) > MAX_LINES}


def _dataclass(node: ast.ClassDef) -> ast.expr | None:
    """The @dataclass decorator of the class, if it has one."""
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "dataclass":
            return d
    return None


def _frozen(decorator: ast.expr) -> bool:
    return isinstance(decorator, ast.Call) and any(
        k.arg == "frozen" and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in decorator.keywords)


def _init_false(value: ast.expr | None) -> bool:
    return (isinstance(value, ast.Call) and getattr(value.func, "id", "") == "field"
            and any(k.arg == "init" and isinstance(k.value, ast.Constant)
                    and k.value.value is False for k in value.keywords))


def constructor_arguments(node: ast.ClassDef) -> int | None:
    """How many arguments the constructor takes: __init__'s (without self; *args and
    **kwargs count one each), or a dataclass's init fields; None for a frozen dataclass
    or a class without a constructor of its own."""
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            a = item.args
            n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) - 1
            return n + (a.vararg is not None) + (a.kwarg is not None)
    decorator = _dataclass(node)
    if decorator is not None and not _frozen(decorator):
        return sum(1 for item in node.body
                   if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                   and "ClassVar" not in ast.unparse(item.annotation)
                   and not _init_false(item.value))
    return None


@functools.cache
def argument_violations() -> set[tuple[str, str]]:
    found = set()
    for name, module in MODULES.items():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ClassDef):
                n = constructor_arguments(node)
                if n is not None and n > MAX_ARGS:
                    found.add(("too many arguments", f"{name}.{node.name}"))
    return found


@functools.cache
def core_violations() -> set[tuple[str, str]]:
    found = set()
    for name, module in MODULES.items():
        if module.layer != "core":
            continue
        for target in imported_names(module):
            if target.startswith(ROOT_NAME):
                continue  # where core may point inside the package is the layers' business
            if target not in CORE_MAY_IMPORT:
                found.add(("core imports", f"{name} -> {target}"))
    return found


CHECKS = {
    "upward import": layer_violations, "sideways import": layer_violations,
    "import cycle": cycle_violations, "too long": length_violations,
    "too many arguments": argument_violations, "core imports": core_violations,
}


def _new(kind: str) -> list[str]:
    return sorted(what for k, what in CHECKS[kind]() if k == kind and (k, what) not in KNOWN)


def test_imports_point_down_the_layers():
    assert _new("upward import") == [], (
        "a lower layer imports a higher one (order: core < store < daemon < ops < web < cli); "
        "move the code down or invert the call (pass a function in)")
    assert _new("sideways import") == [], "a layer of two folders imports across them"


def test_no_import_cycle_between_modules():
    assert _new("import cycle") == [], "modules that import each other: split out what both use"


def test_no_module_over_the_line_limit():
    assert _new("too long") == [], f"modules over {MAX_LINES} lines: split them by job"


def test_no_constructor_over_the_argument_limit():
    assert _new("too many arguments") == [], (
        f"constructors over {MAX_ARGS} arguments: group what belongs together "
        f"(a settings object) or split the class")


def test_core_does_no_io():
    assert _new("core imports") == [], (
        "core/ imports a module outside CORE_MAY_IMPORT: keep I/O, clocks and the "
        "environment in store/ or daemon/ and pass values in")


def test_every_known_violation_still_exists():
    """Fixed ones must leave KNOWN, so that the list only shrinks."""
    gone = sorted(f"{kind}: {what}" for kind, what in KNOWN
                  if (kind, what) not in CHECKS[kind]())
    assert gone == [], "no longer violations: remove them from KNOWN"


def test_the_checks_see_the_package():
    # Guards against a walk that silently finds nothing (a moved package, a bad path).
    assert {"modulatio_d.core.plan", "modulatio_d.store.vault", "modulatio_d.daemon.loop",
            "modulatio_d.ops.survey", "modulatio_d.cli.main"} <= MODULES.keys()
    assert not [name for name in MODULES if ".example" in name]  # package data, not code
    assert "modulatio_d.core.plan" in internal_imports(MODULES["modulatio_d.store.plan_file"])
    assert {m.layer for m in MODULES.values()} >= {"core", "store", "daemon", "ops", "cli"}


def test_every_folder_of_the_package_is_a_layer():
    layers = set().union(*LAYERS)
    assert sorted({m.layer for m in MODULES.values()} - {None} - layers) == []


# --- the checks themselves, on made-up code -------------------------------------------


def test_cycles_are_found_and_a_chain_is_none():
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["d"]}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": ["b"], "b": [], "c": ["a"]}) == []


def test_relative_and_from_imports_resolve_to_modules():
    tree = ast.parse("from . import plan\nfrom ..store.vault import Vault\n"
                     "from modulatio_d.core import errors, names\nimport json\n"
                     "def later():\n    from modulatio_d.ops import survey\n")
    module = Module("modulatio_d.core.x", PACKAGE / "core" / "x.py", tree)
    assert imported_names(module) == [
        "modulatio_d.core.plan", "modulatio_d.store.vault", "modulatio_d.core.errors",
        "modulatio_d.core.names", "json", "modulatio_d.ops.survey"]


def test_constructor_arguments_count_init_and_dataclass_fields():
    tree = ast.parse("""
class A:
    def __init__(self, a, b, /, c, *args, d=1, **kw): ...
@dataclass
class B:
    x: int
    y: ClassVar[int] = 0
    z: list = field(default_factory=list)
    hidden: int = field(init=False)
@dataclass(frozen=True)
class C:
    x: int
class D:
    pass
""")
    counts = {n.name: constructor_arguments(n) for n in tree.body if isinstance(n, ast.ClassDef)}
    assert counts == {"A": 6, "B": 2, "C": None, "D": None}


def test_only_the_serve_command_imports_the_web_libraries():
    """The daemon's start-up and memory must not pay for the HTTP API: web/ is imported by
    cli/serve.py alone, and inside its run function (read from the source, like the rest
    of this file)."""
    importers = sorted(name for name, module in MODULES.items()
                       if any(t.startswith("modulatio_d.web") for t in internal_imports(module))
                       and not name.startswith("modulatio_d.web"))
    assert importers == ["modulatio_d.cli.serve"], importers
    tree = ast.parse(MODULES["modulatio_d.cli.serve"].path.read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("web" in (getattr(n, "module", "") or "") or
                   any(a.name in ("uvicorn", "starlette") for a in n.names) for n in top)


def test_no_two_test_files_share_a_name():
    """pytest imports test files by their base name (no packages under tests/): two of one
    name in two lanes stop the whole run at collection ("import file mismatch")."""
    tests = Path(__file__).resolve().parents[1]
    names = [p.name for p in tests.rglob("test_*.py") if "__pycache__" not in p.parts]
    assert sorted({n for n in names if names.count(n) > 1}) == []

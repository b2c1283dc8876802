"""Finding the vault, making one, and the names and folders it is made of."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modulatio_d.core import names
from modulatio_d.core.errors import InvalidName, NotFound, UsageError, VaultNotFound
from modulatio_d.ops.init import init
from modulatio_d.store import config
from modulatio_d.store import vault as vault_mod
from modulatio_d.store.vault import META, Vault, find_vault

# --- finding it (pure path logic: a fake file system is enough) ---------------


@pytest.fixture
def tree(fs):
    """Two vaults, one inside the other, and a folder that is no vault."""
    for folder in ("/home/ana/outer/.modulatio", "/home/ana/outer/inner/.modulatio",
                   "/home/ana/outer/inner/SALES/plans", "/home/ana/outer/notes/deep",
                   "/srv/other/.modulatio", "/tmp/plain"):
        fs.create_dir(folder)
    return fs


def test_vault_option_wins(tree):
    v = find_vault("/srv/other", {"MODULATIO_VAULT": "/home/ana/outer"},
                   Path("/home/ana/outer/inner"))
    assert v.root == Path("/srv/other")


def test_environment_comes_next(tree):
    v = find_vault(None, {"MODULATIO_VAULT": "/srv/other"}, Path("/home/ana/outer/inner"))
    assert v.root == Path("/srv/other")
    assert find_vault("", {"MODULATIO_VAULT": "/srv/other"}, Path("/tmp")).root == Path(
        "/srv/other")


@pytest.mark.parametrize(("cwd", "root"), [
    ("/home/ana/outer", "/home/ana/outer"),
    ("/home/ana/outer/notes/deep", "/home/ana/outer"),
    ("/home/ana/outer/inner", "/home/ana/outer/inner"),
    ("/home/ana/outer/inner/SALES/plans", "/home/ana/outer/inner"),  # the nearest one
])
def test_then_the_nearest_folder_holding_dot_modulatio(tree, cwd, root):
    assert find_vault(None, {}, Path(cwd)).root == Path(root)


def test_no_vault_is_one_line_that_says_what_to_do(tree):
    with pytest.raises(VaultNotFound) as e:
        find_vault(None, {}, Path("/tmp/plain"))
    assert str(e.value) == ("no vault found at or above /tmp/plain: pass --vault PATH, set "
                            "MODULATIO_VAULT, or create one with `modulatio init PATH`")


def test_a_named_vault_that_is_not_a_folder(tree):
    with pytest.raises(UsageError, match=r"^vault /nowhere is not a folder: create it with "
                                         r"`modulatio init /nowhere`$"):
        find_vault(None, {"MODULATIO_VAULT": "/nowhere"}, Path("/tmp"))


def test_a_dot_modulatio_file_is_not_a_vault(tree):
    tree.create_file("/tmp/plain/.modulatio")
    with pytest.raises(VaultNotFound):
        find_vault(None, {}, Path("/tmp/plain"))


# --- the same through the command, on a real folder ---------------------------


def test_every_way_through_the_cli(vault, run_cli, tmp_path):
    run_cli("plan", "new", "P", "T", "--vault", vault.root)
    deep = vault.root / "P" / "plans"
    for how in ({"argv": ["--vault", str(vault.root)], "env": {}, "cwd": tmp_path},
                {"argv": [], "env": {"MODULATIO_VAULT": str(vault.root)}, "cwd": tmp_path},
                {"argv": [], "env": {}, "cwd": deep}):
        r = run_cli("plan", "list", *how["argv"], env=how["env"], cwd=how["cwd"])
        assert r.code == 0 and r.out.startswith("P-P-001 "), (how, r)

    r = run_cli("plan", "list", cwd=tmp_path)
    assert r.code == 2 and r.out == ""
    assert r.err == (f"modulatio: no vault found at or above {tmp_path}: pass --vault PATH, "
                     f"set MODULATIO_VAULT, or create one with `modulatio init PATH`\n")
    r = run_cli("plan", "list", "--vault", tmp_path / "nope")
    assert r.code == 2 and r.err.startswith("modulatio: vault ") and r.err.count("\n") == 1


# --- making one ---------------------------------------------------------------


def test_init_makes_a_vault_with_the_default_agent(tmp_path, run_cli):
    r = run_cli("init", tmp_path / "new" / "vault")
    root = (tmp_path / "new" / "vault").resolve()
    assert (r.code, r.out) == (0, f"vault ready at {root}\n")
    assert (root / META).is_dir()
    cfg = config.load(root / META / "config.yaml")
    assert cfg.agents["default"].use == "mock"
    assert run_cli("validate", "--vault", root).code == 0
    assert find_vault(None, {}, root).root == root


def test_init_into_an_existing_folder_keeps_its_files(tmp_path):
    (tmp_path / "notes.md").write_text("mine")
    init(tmp_path)
    assert (tmp_path / "notes.md").read_text() == "mine"


def test_init_refuses_an_existing_vault(vault, run_cli):
    config_before = vault.config_path.read_bytes()
    r = run_cli("init", vault.root)
    assert r.code == 2
    assert r.err == (f"modulatio: {vault.root} is already a vault (it has .modulatio/); use it "
                     f"or pick another folder\n")
    assert vault.config_path.read_bytes() == config_before
    r = run_cli("init", "--example", vault.root)
    assert r.code == 2


def test_init_example_copies_a_vault_that_validates(tmp_path, run_cli):
    source = vault_mod.example_source()
    tracked = sorted(p.relative_to(source) for p in source.rglob("*"))
    target = tmp_path / "demo"
    r = run_cli("init", "--example", target)
    assert r.code == 0, r
    v = Vault(target)
    assert len(v.projects()) >= 2
    r = run_cli("validate", "--vault", target)
    assert r.code == 0, r.out
    r = run_cli("plan", "list", "--vault", target)
    assert r.code == 0 and len(r.out.splitlines()) >= 2
    copied = [p.relative_to(target) for p in target.rglob("*")]
    assert not [p for p in copied if p.suffix in (".lock",) or p.name.endswith(".usage.jsonl")
                or "state" in p.parts or "__pycache__" in p.parts]
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == tracked  # untouched

    r = run_cli("init", "--example", target)  # twice: refused, nothing changed
    assert r.code == 2
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    r = run_cli("init", "--example", tmp_path / "full")
    assert r.code == 2 and "is not empty" in r.err


# --- layout and names ---------------------------------------------------------


def test_layout_paths(vault):
    root = vault.root
    assert vault.config_path == root / ".modulatio" / "config.yaml"
    assert vault.events_path == root / ".modulatio" / "events.jsonl"
    assert vault.daemons_dir == root / ".modulatio" / "daemons"
    assert vault.plan_path("SALES", "SALES-P-001") == root / "SALES" / "plans" / "SALES-P-001.md"
    assert vault.cron_dir("SALES") == root / "SALES" / "cron"
    assert vault.tickets_dir("SALES") == root / "SALES" / "tickets"
    assert vault.record_path("SALES", "SALES-P-001") == (
        root / ".modulatio" / "state" / "SALES" / "SALES-P-001.json")


def test_projects_are_valid_folders_with_plans_cron_or_tickets(vault):
    for folder in ("SALES/plans", "ESS/cron", "OPS/tickets", "notes", "bad name/plans",
                   ".obsidian/plans", "archive.2024/plans"):
        (vault.root / folder).mkdir(parents=True)
    (vault.root / "file.md").write_text("x")
    assert vault.projects() == ["ESS", "OPS", "SALES", "archive.2024"]


def test_files_are_the_visible_md_files(vault):
    folder = vault.plans_dir("P")
    folder.mkdir(parents=True)
    for name in ("P-P-001.md", "P-P-002.md", ".P-P-003.md.swp", ".hidden.md", "P-P-001.lock",
                 "P-P-001.usage.jsonl", "notes.txt"):
        (folder / name).write_text("")
    assert sorted(e.name for e in vault.files("P", "plans")) == ["P-P-001.md", "P-P-002.md"]
    assert list(vault.files("NOPE", "plans")) == []


def test_find(vault):
    for project in ("A", "B"):
        vault.plans_dir(project).mkdir(parents=True)
    (vault.plans_dir("B") / "B-P-001.md").write_text("")
    assert vault.find("plans", "B-P-001") == ("B", vault.plans_dir("B") / "B-P-001.md")
    with pytest.raises(NotFound, match=r"^no plan named 'B-P-001': no plans/B-P-001.md in "):
        vault.find("plans", "B-P-001", project="A")
    with pytest.raises(InvalidName, match=r"^plan id '\.\./B-P-001' is not a valid name"):
        vault.find("plans", "../B-P-001")
    with pytest.raises(InvalidName, match=r"^ticket id"):
        vault.find("tickets", "a/b")


@pytest.mark.parametrize("name", ["SALES", "ESS-P-001", "a", "A_b-c.d", "x.", "_", "0",
                                  "a..b", "x" * 200])
def test_valid_names(name):
    assert names.is_valid(name) and names.check("project code", name) == name


@pytest.mark.parametrize("name", ["", ".", "..", ".x", "-x", "../x", "a/b", "a\\b", "/a", "a b",
                                  "a:b", "é", "a\n", "a\0", "x" * 201, None, 5, "~"])
def test_invalid_names(name):
    assert not names.is_valid(name)
    with pytest.raises(InvalidName):
        names.check("project code", name)


def test_reading_follows_links_inside_the_vault_only(vault, tmp_path):
    (vault.root / "real.md").write_text("inside")
    os.symlink(vault.root / "real.md", vault.root / "link.md")
    os.symlink(tmp_path / "outside.md", vault.root / "out.md")
    (tmp_path / "outside.md").write_text("outside")
    snap, text = vault.read(vault.root / "link.md")
    assert text == "inside" and snap.raw == b"inside"
    with pytest.raises(Exception, match="leads out of the vault"):
        vault.read(vault.root / "out.md")

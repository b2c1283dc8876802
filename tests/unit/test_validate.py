"""Every bad input of the foundation issue (item 6): one clear line, file untouched.

Each case is checked three ways on a real vault: `read_plan` raises BadFile
with `path:line: reason`; `modulatio validate` prints that line and exits 1;
`modulatio plan approve` refuses it. Afterwards the file holds the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modulatio_d.core.errors import BadFile
from modulatio_d.store.plan_file import read_plan

GOOD = "id: P-P-001\ntitle: T\nstatus: draft\nsub_objectives: [a, b]\n"
STATUS_HINT = "use one of draft, approved, executing, paused, completed, failed, aborted"


def fm(head: str, body: str = "Body.\n") -> bytes:
    return f"---\n{head}---\n{body}".encode()


def laughs(levels: int = 9) -> bytes:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]")
    return fm("id: P-P-001\nsub_objectives: [a]\n" + "\n".join(lines) + "\n")


# name: (file name, bytes, line or None, reason the message starts with)
CASES = {
    "invalid YAML": ("P-P-001.md", fm("id: P-P-001\ntitle: x\n  bad: y\nsub_objectives: [a]\n"),
                     4, "invalid YAML: mapping values are not allowed here"),
    "invalid YAML, unclosed flow": ("P-P-001.md", fm("id: P-P-001\nstatus: [draft\n"
                                                     "sub_objectives: [a]\n"),
                                    4, "invalid YAML: expected ',' or ']', but got ':'"),
    "duplicate key": ("P-P-001.md", fm("id: P-P-001\nsub_objectives: [a]\nid: P-P-001\n"),
                      4, 'invalid YAML: found duplicate key "id"'),
    "no frontmatter": ("P-P-001.md", b"# A plan\n\nstatus: approved\n", 1,
                       "no frontmatter: the file must start with a line '---'"),
    "frontmatter not closed": ("P-P-001.md", b"---\nid: P-P-001\nsub_objectives: [a]\n", 1,
                               "the frontmatter is not closed"),
    "frontmatter a list": ("P-P-001.md", fm("- id: P-P-001\n- sub_objectives: [a]\n"), 2,
                           "the YAML is a list, not a mapping of keys"),
    "frontmatter a text": ("P-P-001.md", fm("just some words\n"), 2,
                           "the YAML is a single value, not a mapping of keys"),
    "frontmatter empty": ("P-P-001.md", fm(""), 2, "the YAML is empty, not a mapping of keys"),
    "unknown status": ("P-P-001.md", fm("id: P-P-001\nstatus: running  # typo\n"
                                        "sub_objectives: [a]\n"),
                       3, f"unknown status 'running' ({STATUS_HINT})"),
    "sub_objectives missing": ("P-P-001.md", fm("id: P-P-001\ntitle: T\n"), 2,
                               "sub_objectives is missing"),
    "sub_objectives empty": ("P-P-001.md", fm("id: P-P-001\nsub_objectives: []\n"), 3,
                             "sub_objectives is empty"),
    "sub_objectives not a list": ("P-P-001.md", fm("id: P-P-001\ntitle: T\n"
                                                   "sub_objectives: do the thing\n"),
                                  4, "sub_objectives is not a list"),
    "sub_objectives a mapping": ("P-P-001.md", fm("id: P-P-001\nsub_objectives:\n  a: 1\n"),
                                 3, "sub_objectives is not a list"),
    "two executors": ("P-P-001.md", fm("id: P-P-001\nsub_objectives:\n  - ok\n"
                                       "  - title: both\n    run: make\n    call: a.b:c\n"),
                      5, "sub-objective 2 has two executors run and call"),
    "three executors": ("P-P-001.md", fm("id: P-P-001\nsub_objectives:\n"
                                         "  - {objective: o, run: r, call: 'a:b'}\n"),
                        4, "sub-objective 1 has two executors objective and run and call"),
    "no executor": ("P-P-001.md", fm("id: P-P-001\nsub_objectives:\n  - ok\n  - ok\n"
                                     "  - {title: nothing to run, timeout: 5m}\n"),
                    6, "sub-objective 3 has no executor (give exactly one of objective"),
    "current_index negative": ("P-P-001.md", fm("id: P-P-001\nsub_objectives: [a, b]\n"
                                                "current_index: -1\n"),
                               4, "current_index -1 is outside 0..2 (there are 2 sub-objectives)"),
    "current_index not an int": ("P-P-001.md", fm("id: P-P-001\nsub_objectives: [a, b]\n"
                                                  "current_index: '1'\n"),
                                 4, "current_index '1' is not an integer"),
    "current_index a float": ("P-P-001.md", fm("id: P-P-001\nsub_objectives: [a, b]\n"
                                               "current_index: 1.0\n"),
                              4, "current_index 1.0 is not an integer"),
    "current_index a bool": ("P-P-001.md", fm("id: P-P-001\nsub_objectives: [a, b]\n"
                                              "current_index: true\n"),
                             4, "current_index True is not an integer"),
    "current_index past the end": ("P-P-001.md", fm("id: P-P-001\nsub_objectives: [a, b]\n"
                                                    "current_index: 3\n"),
                                   4, "current_index 3 is outside 0..2"),
    "id differs from the file name": ("P-P-001.md", fm("title: T\nid: P-P-002\n"
                                                       "sub_objectives: [a]\n"),
                                      3, ("id 'P-P-002' differs from the file name 'P-P-001' "
                                         "(set id: P-P-001 or rename the file to P-P-002.md)")),
    "id with a path separator": ("P-P-001.md", fm("id: ../P-P-001\nsub_objectives: [a]\n"), 2,
                                 ("id '../P-P-001' is not a valid name (use letters, digits, "
                                 "'_', '-' and '.', starting with a letter, digit or '_')")),
    "id with a backslash": ("P-P-001.md", fm("id: 'a\\b'\nsub_objectives: [a]\n"), 2,
                            "id 'a\\\\b' is not a valid name"),
    "id with a leading dot": ("P-P-001.md", fm("id: .P-P-001\nsub_objectives: [a]\n"), 2,
                              "id '.P-P-001' is not a valid name"),
    "id with bad characters": ("P-P-001.md", fm("id: P P$001\nsub_objectives: [a]\n"), 2,
                               "id 'P P$001' is not a valid name"),
    "id not a text": ("P-P-001.md", fm("sub_objectives: [a]\nid: 17\n"), 3,
                      "id 17 is not a valid name"),
    "file name with bad characters": ("P P$1.md", fm("sub_objectives: [a]\n"), 2,
                                      "id 'P P$1' is not a valid name"),
    "non-UTF-8 bytes": ("P-P-001.md", (b"---\nid: P-P-001\ntitle: caf\xe9\nsub_objectives: [a]\n"
                                      b"---\n"), 3,
                        "not UTF-8: byte 0xe9 at offset 26 (save the file as UTF-8)"),
    "non-UTF-8 in the body": ("P-P-001.md", fm(GOOD) + b"ok\n\x80\n", 9,
                              "not UTF-8: byte 0x80 at offset"),
    "larger than 1 MiB": ("P-P-001.md", fm(GOOD, "x" * (1 << 20)), None,
                          (f"file is {len(fm(GOOD, 'x' * (1 << 20)))} bytes, more than the "
                          f"1048576 allowed (move long text out of the plan)")),
    "anchor and alias": ("P-P-001.md", fm("id: P-P-001\nstep: &s make\n"
                                          "sub_objectives: [*s]\n"),
                         3, "YAML anchors and aliases are not allowed (write the value out"),
    "alias only": ("P-P-001.md", fm("id: P-P-001\nsub_objectives: [*s]\n"), 3,
                   "YAML anchors and aliases are not allowed"),
    "merge key": ("P-P-001.md", fm("id: P-P-001\nbase: &b {run: x}\nsub_objectives:\n"
                                   "  - <<: *b\n    title: t\n"),
                  3, "YAML anchors and aliases are not allowed"),
    "billion laughs": ("P-P-001.md", laughs(), 4, "YAML anchors and aliases are not allowed"),
}


def place(vault, name: str, raw: bytes) -> Path:
    folder = vault.plans_dir("P")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(raw)
    return path


def check_message(message: str, path: Path, line: int | None, reason: str,
                  severity: str = "") -> None:
    """`path:line: reason`; validate's lines name the severity: `path:line: error: reason`."""
    where = f"{path}:{line}" if line else f"{path}"
    label = f"{severity}: " if severity else ""
    assert message.startswith(f"{where}: {label}{reason}"), message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_with_one_line_and_left_alone(case, vault, run_cli):
    name, raw, line, reason = CASES[case]
    path = place(vault, name, raw)
    before = os.stat(path)

    with pytest.raises(BadFile) as e:
        read_plan(vault, path)
    check_message(str(e.value), path, line, reason)
    assert e.value.line == line

    r = run_cli("validate", "--vault", vault.root)
    assert r.code == 1, r
    problems = r.out.splitlines()
    assert len(problems) == 2 and problems[1] == f"1 problem(s) in {vault.root}", r.out
    check_message(problems[0], path, line, reason, "error")

    if name == "P-P-001.md":
        r = run_cli("plan", "approve", "P-P-001", "--vault", vault.root)
        assert r.code == 1 and r.out == ""
        check_message(r.err.removeprefix("modulatio: ").rstrip("\n"), path, line, reason)
        assert r.err.count("\n") == 1

    assert path.read_bytes() == raw
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns, after.st_mode) == (
        before.st_ino, before.st_mtime_ns, before.st_mode)


@pytest.mark.timeout(10)
def test_billion_laughs_is_refused_before_expansion(vault):
    # 9 levels of 9: 387 million strings if anything walked the aliases. The guard
    # is the timeout above, not a timing assertion.
    raw = laughs(9)
    assert len(raw) < 1024
    path = place(vault, "P-P-001.md", raw)
    with pytest.raises(BadFile, match="anchors and aliases are not allowed"):
        read_plan(vault, path)


def test_a_link_out_of_the_vault_is_refused(vault, run_cli, tmp_path):
    outside = tmp_path / "outside.md"
    outside.write_bytes(fm(GOOD))
    path = vault.plans_dir("P") / "P-P-001.md"
    path.parent.mkdir(parents=True)
    path.symlink_to(outside)
    reason = (f"is a symbolic link (to {str(outside)!r}): links are never followed in the "
              f"vault (put the file or folder itself there instead of a link)")

    with pytest.raises(BadFile) as e:
        read_plan(vault, path)
    check_message(str(e.value), path, None, reason)

    r = run_cli("validate", "--vault", vault.root)
    assert r.code == 1
    check_message(r.out.splitlines()[0], path, None, reason, "error")

    r = run_cli("plan", "approve", "P-P-001", "--vault", vault.root)
    assert r.code == 1
    check_message(r.err.removeprefix("modulatio: ").rstrip("\n"), path, None, reason)
    assert outside.read_bytes() == fm(GOOD)
    assert path.is_symlink()


def test_a_link_inside_the_vault_is_refused_too(vault, run_cli):
    # No link is followed in the vault, even one to another file of it: a plan read
    # through a link could never be written back without writing through it.
    shared = vault.root / "shared"
    shared.mkdir()
    (shared / "P-P-001.md").write_bytes(fm(GOOD))
    link = vault.plans_dir("P") / "P-P-001.md"
    link.parent.mkdir(parents=True)
    link.symlink_to(shared / "P-P-001.md")
    with pytest.raises(BadFile, match=r"is a symbolic link .*links are never followed"):
        read_plan(vault, link)
    r = run_cli("validate", "--vault", vault.root)
    assert r.code == 1
    check_message(r.out.splitlines()[0], link, None, "is a symbolic link", "error")
    r = run_cli("plan", "approve", "P-P-001", "--vault", vault.root)
    assert r.code == 1 and "is a symbolic link" in r.err
    assert (shared / "P-P-001.md").read_bytes() == fm(GOOD) and link.is_symlink()


def test_a_link_looping_or_dangling_is_a_problem_not_a_crash(vault, run_cli):
    folder = vault.plans_dir("P")
    folder.mkdir(parents=True)
    (folder / "P-P-001.md").symlink_to(folder / "gone.md")
    (folder / "P-P-002.md").symlink_to(folder / "P-P-002.md")
    r = run_cli("validate", "--vault", vault.root)
    assert r.code == 1 and "Traceback" not in r.out + r.err
    lines = r.out.splitlines()
    check_message(lines[0], folder / "P-P-001.md", None, "is a symbolic link (to ", "error")
    check_message(lines[1], folder / "P-P-002.md", None, "is a symbolic link (to ", "error")


def test_a_linked_project_or_plans_folder_is_one_problem_and_nothing_in_it_is_read(
        vault, run_cli, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "plans").mkdir(parents=True)
    (elsewhere / "plans" / "L-P-001.md").write_bytes(fm(GOOD.replace("P-P-001", "L-P-001")))
    (vault.root / "L").symlink_to(elsewhere)
    (vault.root / "M" / "cron").mkdir(parents=True)
    (vault.root / "M" / "plans").symlink_to(elsewhere / "plans")
    r = run_cli("validate", "--vault", vault.root)
    assert r.code == 1
    assert r.out.splitlines() == [
        f"{vault.root / 'L'}: error: is a symbolic link (to {str(elsewhere)!r}): links are never "
        f"followed in the vault (put the file or folder itself there instead of a link)",
        f"{vault.root / 'M' / 'plans'}: error: is a symbolic link (to {str(elsewhere / 'plans')!r}): "
        f"links are never followed in the vault (put the file or folder itself there "
        f"instead of a link)", f"2 problem(s) in {vault.root}"], r.out


@pytest.mark.parametrize("code", ["../x", "a/b", "..", ".x", ".", "a b", "x$", "", "a\\b",
                                  "/abs", "é"])
def test_bad_project_codes_are_refused_by_the_cli(code, vault, run_cli):
    before = sorted(p.relative_to(vault.root) for p in vault.root.rglob("*"))
    r = run_cli("plan", "new", code, "T", "--vault", vault.root)
    assert r.code == 2, r
    assert r.err == (f"modulatio: project code {code!r} is not a valid name: use letters, "
                     f"digits, '_', '-' and '.', starting with a letter, digit or '_'\n")
    assert sorted(p.relative_to(vault.root) for p in vault.root.rglob("*")) == before
    assert not (vault.root.parent / "x").exists()


@pytest.mark.parametrize("plan_id", ["../../etc/passwd", ".hidden", "a/b", "P P"])
def test_bad_plan_ids_are_refused_by_the_cli(plan_id, vault, run_cli):
    for argv in (["plan", "show", plan_id], ["plan", "approve", plan_id],
                 ["project", "resume", plan_id]):
        r = run_cli(*argv, "--vault", vault.root)
        assert r.code == 2, r
        assert r.err.startswith(f"modulatio: plan id {plan_id!r} is not a valid name")


def test_validate_lists_every_problem_and_passes_good_files(vault, run_cli):
    good = place(vault, "P-P-001.md", fm(GOOD))
    place(vault, "P-P-002.md", fm("id: P-P-002\nstatus: nope\nsub_objectives: [a]\n"))
    place(vault, "P-P-003.md", b"no frontmatter\n")
    place(vault, ".P-P-004.md", b"hidden: an editor's swap or temp file\n")
    place(vault, "notes.txt", b"not a plan\n")
    r = run_cli("validate", "--vault", vault.root)
    assert r.code == 1
    lines = r.out.splitlines()
    assert [line.split(": ", 1)[0] for line in lines[:2]] == [
        f"{good.parent / 'P-P-002.md'}:3", f"{good.parent / 'P-P-003.md'}:1"]
    assert lines[2] == f"2 problem(s) in {vault.root}"

    (good.parent / "P-P-002.md").unlink()
    (good.parent / "P-P-003.md").unlink()
    r = run_cli("validate", "--vault", vault.root)
    assert (r.code, r.out) == (0, f"{vault.root}: every file is valid\n")


def test_validate_checks_the_config(vault, run_cli):
    vault.config_path.write_text("agents:\n  default: {use: mock}\ncolour: blue\n")
    r = run_cli("validate", "--vault", vault.root)
    assert r.code == 1
    assert r.out.splitlines()[0].startswith(
        f"{vault.config_path}:3: error: unknown keys ['colour']")


def test_validate_reports_a_project_folder_whose_name_is_no_code(vault, run_cli):
    (vault.root / "my project" / "plans").mkdir(parents=True)
    (vault.root / ".hidden" / "plans").mkdir(parents=True)  # hidden folders are not projects
    result = run_cli("validate", "--vault", vault.root)
    assert result.code == 1
    assert result.out.splitlines()[0] == (
        f"{vault.root / 'my project'}: error: folder name is not a valid project code, so its plans "
        f"never run (rename it to letters, digits, '_', '-' and '.')")
    assert ".hidden" not in result.out


def test_validate_json_lists_each_problem_for_scripts(vault, run_cli):
    import json

    good = run_cli("validate", "--vault", vault.root, "--json")
    assert (good.code, json.loads(good.out)) == (0, [])
    path = place(vault, "P-P-001.md", fm("id: P-P-001\nstatus: runing\nsub_objectives: [a]\n"))
    bad = run_cli("validate", "--vault", vault.root, "--json")
    assert bad.code == 1
    (problem,) = json.loads(bad.out)
    assert problem["path"] == str(path) and problem["line"] == 3
    assert problem["reason"] == "unknown status 'runing'"
    assert problem["hint"].startswith("use one of draft, approved")
    assert problem["severity"] == "error"
    assert set(problem) == {"path", "line", "reason", "hint", "severity", "refused"}

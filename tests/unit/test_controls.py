"""Vault text shown to people: control characters escaped (core/controls.py) in every
human output (`plan list`, `plan show`, `status`, `cron list`, `ticket list`) and
in the daemon's text log; JSON outputs keep the text exact.

Each hostile string is written into a real vault file the way a person could
(YAML double-quoted escapes), then shown by the real commands in-process.
"""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from modulatio_d.core.controls import neutralise
from modulatio_d.daemon.logfmt import TextFormatter

HOSTILE = {
    "OSC window title": ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    "screen clear": ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
    "colours": ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    "carriage return": ("ok\rFAILED", "ok\\rFAILED"),
    "newline": ("one\nINFO modulatio.daemon: fake log line", "one\\nINFO modulatio.daemon: fake log line"),
    "tab": ("a\tb", "a\\tb"),
    "NUL": ("a\x00b", "a\\x00b"),
    "DEL": ("x\x7f", "x\\x7f"),
    "C1 CSI": ("\x9b31m", "\\x9b31m"),
    "bidi override": ("\u202eexe.txt", "\\u202eexe.txt"),
    "bidi isolate": ("a\u2066b\u2069", "a\\u2066b\\u2069"),
    "line separator": ("a\u2028b", "a\\u2028b"),
    "lone surrogate": ("X\ud800", "X\\ud800"),
}
# Plans refuse NULs and lone surrogates in what a step's process is given (titles
# included): those two are shown escaped by neutralise, but never reach a plan list.
IN_PLANS = {k: v for k, v in HOSTILE.items() if k not in ("NUL", "lone surrogate")}
# What must never reach a terminal or a line-based log.
RAW = ["\x1b", "\x07", "\r", "\x00", "\x7f", "\x9b", "\u202e", "\u2066", "\u2028", "\ud800"]


def _clean(text: str) -> None:
    for c in RAW:
        assert c not in text, f"{c!r} shown raw in {text!r}"


@pytest.mark.parametrize("name", list(HOSTILE))
def test_each_hostile_string_is_shown_escaped(name):
    raw, shown = HOSTILE[name]
    assert neutralise(raw) == shown
    assert neutralise(shown) == shown  # what is shown escaped stays as it is
    shown.encode("utf-8")  # and can always be printed


def test_ordinary_text_is_kept_byte_for_byte():
    for text in ["Weekly research digest", "Café, naïve, 東京, emoji 🙂", "C:\\path\\x41",
                 "progress [████░░░░]", ""]:
        assert neutralise(text) is text or neutralise(text) == text


def _title_yaml(text: str) -> str:
    # A YAML double-quoted scalar reads JSON's escapes: \u001b, \n, \ud800 ...
    return json.dumps(text)


def _vault_with_hostile_titles(vault):
    plans = vault.plans_dir("P")
    plans.mkdir(parents=True)
    for n, (raw, _) in enumerate(IN_PLANS.values(), 1):
        plan_id = f"P-P-{n:03d}"
        reflection = (
            "reflection_log:\n"
            f"  - {{index: 0, attempt: 1, outcome: ok, decision: continue, "
            f"summary: {_title_yaml(raw)}}}\n")
        (plans / f"{plan_id}.md").write_text(
            f"---\nid: {plan_id}\ntitle: {_title_yaml(raw)}\nstatus: paused\n"
            f"sub_objectives:\n  - {_title_yaml(raw)}\n  - second\ncurrent_index: 1\n"
            f"last_error: {_title_yaml(raw)}\n{reflection}---\n")
    tickets = vault.tickets_dir("P")
    tickets.mkdir()
    (tickets / "P-P-001-T-01.md").write_text(
        f"---\nid: P-P-001-T-01\nplan: P-P-001\nseverity: warning\n"
        f"reason: {_title_yaml(HOSTILE['OSC window title'][0] + HOSTILE['newline'][0])}\n"
        f"created_at: 2026-01-01T00:00:00Z\ncheckpoint: {{current_index: 1, rev: 1}}\n"
        f"decision: pending\nstatus: open\n---\n")
    cron = vault.cron_dir("P")
    cron.mkdir()
    (cron / "P-C-001.md").write_text(
        f"---\nid: P-C-001\nobjective: {_title_yaml(HOSTILE['screen clear'][0] + 'x')}\n"
        f"schedule: \"0 6 * * *\"\ntimezone: UTC\ncreated_at: 2026-01-01T00:00:00Z\n---\n")


@pytest.mark.parametrize("argv", [
    ("plan", "list"), ("plan", "show", "P-P-001"), ("plan", "show", "P-P-011"),
    ("plan", "show", "P-P-005"), ("status",), ("cron", "list"), ("ticket", "list"),
])
def test_human_outputs_show_vault_text_escaped(vault, run_cli, argv):
    _vault_with_hostile_titles(vault)
    result = run_cli(*argv, "--vault", vault.root)
    assert result.code == 0, result.err
    _clean(result.out)
    lines = result.out.splitlines()
    # a newline in a title never starts a line of its own
    assert not any(line.startswith("INFO modulatio") for line in lines)
    if argv == ("plan", "list"):
        assert len(lines) == len(IN_PLANS)
        shown = "\n".join(lines)
        for _, escaped in IN_PLANS.values():
            assert escaped in shown
    if argv[:2] == ("plan", "show"):
        n = int(argv[2][-3:])
        escaped = list(IN_PLANS.values())[n - 1][1]
        # title, error, sub-objective and the step's summary: all escaped
        assert sum(line.count(escaped) for line in lines) >= 4, result.out


@pytest.mark.parametrize("argv", [("plan", "list", "--json"), ("plan", "show", "P-P-001", "--json"),
                                  ("cron", "list", "--json"), ("ticket", "list", "--json")])
def test_json_outputs_keep_the_text_exact(vault, run_cli, argv):
    _vault_with_hostile_titles(vault)
    result = run_cli(*argv, "--vault", vault.root)
    assert result.code == 0, result.err
    data = json.loads(result.out)
    raw = HOSTILE["OSC window title"][0]
    if argv[1] == "list" and argv[0] == "plan":
        assert [r["title"] for r in data] == [raw for raw, _ in IN_PLANS.values()]
    elif argv[0] == "plan":
        assert data["title"] == raw and data["sub_objectives"][0] == raw
    elif argv[0] == "cron":
        assert data[0]["objective"] == HOSTILE["screen clear"][0] + "x"
    else:
        assert data[0]["reason"] == raw + HOSTILE["newline"][0]


def test_an_error_message_is_shown_escaped(vault, run_cli):
    plans = vault.plans_dir("P")
    plans.mkdir(parents=True)
    (plans / "P-P-001.md").write_text(
        '---\nid: P-P-001\nstatus: "\\e]0;pwned\\a"\nsub_objectives: [a]\n---\n')
    result = run_cli("plan", "approve", "P-P-001", "--vault", vault.root)
    assert result.code == 1
    _clean(result.err)
    assert "\\x1b]0;pwned\\x07" in result.err


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nERROR modulatio.daemon: forged by an exception")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("modulatio.daemon", logging.INFO, __file__, 1, msg, args, exc_info)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_the_text_log_gives_one_line_per_record(name):
    raw, shown = HOSTILE[name]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.emit(_record("step %d: %s", 1, raw))
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith(f"INFO modulatio.daemon: step 1: {shown}\n")
    _clean(text)


def test_a_traceback_in_the_text_log_cannot_pass_for_a_record():
    text = TextFormatter().format(_record("failed: %s", "x", exc=True))
    first, *rest = text.split("\n")
    assert first.endswith("INFO modulatio.daemon: failed: x")
    assert rest and all(line.startswith("    ") for line in rest)
    assert any("forged by an exception" in line for line in rest)

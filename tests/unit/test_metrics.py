"""`modulatio metrics`: Prometheus text exposition format 0.0.4, checked by a strict
parser (tests/prometheus.py); the writer and an empty vault here, the every-state
vault made by real daemons in tests/e2e/test_metrics_every_state.py.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta

import pytest
from prometheus import FormatError, parse, sample

from modulatio_d.ops import metrics
from modulatio_d.ops.init import init

# --- the parser rejects what it must ------------------------------------------------------

@pytest.mark.parametrize("bad", [
    'a{x="1"} 1',                                  # no newline at the end
    'a{x="1} 1\n',                                  # unterminated label value
    'a{x="\\t"} 1\n',                               # an escape the format lacks
    'a{x="1"} one\n',                               # not a number
    'a 1\nb 1\na 2\n',                              # a family split in two groups
    'a{x="1"} 1\na{x="1"} 2\n',                     # a series twice
    'a 1\n# TYPE a gauge\n',                        # TYPE after samples
    '# TYPE a gauges\na 1\n',                       # unknown type
    '9a 1\n',                                       # bad name
])
def test_the_test_parser_rejects(bad):
    with pytest.raises(FormatError):
        parse(bad)


def test_the_test_parser_reads_escapes_and_specials():
    fams = parse('# HELP a x\\\\y\\nz\n# TYPE a gauge\na{l="q\\"b\\\\n\\n",m="",} NaN\n'
                 'b +Inf 1700000000000\n')
    assert fams["a"].help == "x\\y\nz"
    ((key, value),) = fams["a"].samples.items()
    assert dict(key) == {"l": 'q"b\\n\n', "m": ""} and math.isnan(value)
    assert fams["b"].samples[()] == math.inf


# --- the writer ----------------------------------------------------------------------------------

def test_label_values_and_help_are_escaped():
    f = metrics.Family("modulatio_x", "gauge", 'help with \\ and\nnewline')
    tricky = 'a "quoted" \\ back\nslash'
    f.add(1.5, project=tricky, other="plain")
    f.add(float("nan"), project="n")
    f.add(float("inf"), project="i")
    f.add(3, project="int")
    text = metrics.render([f])
    assert text.count("\n") == 6  # a newline in a value never breaks the line
    fams = parse(text)
    assert fams["modulatio_x"].help == 'help with \\ and\nnewline'
    assert sample(fams, "modulatio_x", project=tricky, other="plain") == 1.5
    assert math.isnan(sample(fams, "modulatio_x", project="n"))
    assert sample(fams, "modulatio_x", project="i") == math.inf
    assert 'modulatio_x{project="int"} 3\n' in text


def test_metrics_of_an_empty_vault_parse(tmp_path):
    vault = init(tmp_path / "v")
    fams = parse(metrics.text(vault, datetime.now(UTC)))
    assert fams["modulatio_daemons"].samples[(("state", "live"),)] == 0
    assert fams["modulatio_plans"].samples == {}


# --- bad input never stops the metrics ------------------------------------------------------

BAD_LINES = [
    b"not json at all\n",
    b'{"ts": "2026-01-01T00:00:00Z", "event": "step_ended", "project": "P"\n',  # cut short
    b'["event", "step_ended"]\n',                                             # not an object
    b'{"event": "step_ended", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",  # too deep
    b'{"event": "step_ended", "project": "\xff\xfe"}\n',                     # not UTF-8
]


def _events(vault, *lines: bytes) -> None:
    with open(vault.events_path, "ab") as f:
        for line in lines:
            f.write(line)


def test_a_bad_event_line_is_skipped_and_counted(tmp_path, run_cli):
    vault = init(tmp_path / "v")
    good = b'{"ts": "2026-01-01T00:00:00Z", "event": "step_ended", "project": "P", ' \
           b'"outcome": "failed"}\n'
    surrogate = b'{"ts": "2026-01-01T00:00:00Z", "event": "step_ended", ' \
                b'"project": "X\\ud800", "outcome": "ok"}\n'
    _events(vault, good, *BAD_LINES, surrogate, b"\n", good.rstrip(b"\n"))
    out = tmp_path / "m.prom"
    for argv in (["metrics"], ["metrics", "--output", str(out)]):
        result = run_cli(*argv, "--vault", vault.root)
        assert result.code == 0, result.err
        fams = parse(result.out if len(argv) == 1 else out.read_text())
        assert sample(fams, "modulatio_events_unreadable_total") == len(BAD_LINES)
        assert sample(fams, "modulatio_steps_run_total", project="P") == 2  # and the last line
        assert sample(fams, "modulatio_steps_failed_total", project="P") == 2
        # the lone surrogate is written as its escape, never a UnicodeEncodeError
        assert sample(fams, "modulatio_steps_run_total", project="X\\ud800") == 1
        assert sample(fams, "modulatio_metrics_ok") == 1


def test_a_file_is_written_even_when_the_vault_cannot_be_read(tmp_path, run_cli, monkeypatch):
    vault = init(tmp_path / "v")
    out = tmp_path / "m.prom"
    out.write_text("modulatio_plans 999\n")  # yesterday's numbers must not stay

    def broken(*a, **k):
        raise PermissionError(13, "Permission denied", str(vault.events_path))

    monkeypatch.setattr(metrics, "collect", broken)
    result = run_cli("metrics", "--vault", vault.root, "--output", out)
    assert result.code == 1
    assert "could not read" in result.err and "Permission denied" in result.err
    fams = parse(out.read_text())
    assert sample(fams, "modulatio_metrics_ok", error="PermissionError") == 0
    assert "modulatio_plans" not in fams and "modulatio_build_info" in fams


def test_two_heartbeats_of_one_host_and_pid_give_one_series(tmp_path, run_cli):
    vault = init(tmp_path / "v")
    vault.daemons_dir.mkdir()
    host, now = os.uname().nodename, datetime.now(UTC)
    dead = 2 ** 22 + 17  # above pid_max's default: no such process
    for name, ago in (("a.json", 50), (f"{host}.{dead}.json", 5), ("copy.json", 500)):
        tick = (now - timedelta(seconds=ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        (vault.daemons_dir / name).write_text(
            f'{{"pid": {dead}, "host": "{host}", "last_tick": "{tick}", "started_at": '
            f'"{tick}", "tick_seconds": 30}}')
    result = run_cli("metrics", "--vault", vault.root)
    assert result.code == 0, result.err
    fams = parse(result.out)  # the parser refuses a series given twice
    assert 4 <= sample(fams, "modulatio_daemon_last_tick_age_seconds", host=host,
                       pid=dead) < 40  # the freshest file's
    assert sample(fams, "modulatio_daemons", state="stale") == 1

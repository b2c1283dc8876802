"""`modulatio metrics`: Prometheus text exposition format 0.0.4, checked by a strict
parser written here from the format's description (no dependency), on the
every-state vault of test_status.py.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from test_status import LATER_USAGE, modulatio, shared_every_state

from modulatio_d.ops import metrics
from modulatio_d.ops.init import init

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class FormatError(AssertionError):
    pass


@dataclass
class Fam:
    name: str
    type: str | None = None
    help: str | None = None
    samples: dict[tuple, float] = field(default_factory=dict)


def _unescape(text: str, allowed: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            nxt = text[i + 1: i + 2]
            if nxt not in allowed:
                raise FormatError(f"bad escape \\{nxt} in {text!r}")
            out.append({"n": "\n"}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _labels(text: str, pos: int, line: str) -> tuple[dict[str, str], int]:
    """Parse `{a="x",b="y"}` starting at text[pos] == '{'; (labels, position after '}')."""
    labels: dict[str, str] = {}
    pos += 1
    while True:
        if text[pos] == "}":
            return labels, pos + 1
        m = LABEL.match(text, pos)
        if not m or text[m.end(): m.end() + 2] != '="':
            raise FormatError(f"bad label at {pos}: {line!r}")
        name, pos = m.group(0), m.end() + 2
        start = pos
        while text[pos] != '"':
            if text[pos] == "\n":
                raise FormatError(f"raw newline in a label value: {line!r}")
            pos += 2 if text[pos] == "\\" else 1
        if name in labels:
            raise FormatError(f"label {name} twice: {line!r}")
        labels[name] = _unescape(text[start:pos], '\\"n')
        pos += 1
        if text[pos] == ",":
            pos += 1
        elif text[pos] != "}":
            raise FormatError(f"expected , or }} at {pos}: {line!r}")


def _value(token: str, line: str) -> float:
    if token in ("NaN", "+Inf", "-Inf"):
        return float(token.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", token):
        raise FormatError(f"bad value {token!r}: {line!r}")
    return float(token)


def parse(text: str) -> dict[str, Fam]:
    """The families of an exposition; raises FormatError on anything out of format."""
    if text and not text.endswith("\n"):
        raise FormatError("the last line must end with a newline")
    fams: dict[str, Fam] = {}
    closed: set[str] = set()
    current: str | None = None

    def family(name: str) -> Fam:
        nonlocal current
        if name != current:
            if name in closed:
                raise FormatError(f"{name} appears in two separate groups")
            if current is not None:
                closed.add(current)
            current = name
        return fams.setdefault(name, Fam(name))

    for line in text.split("\n")[:-1]:
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.fullmatch(name):
                    raise FormatError(f"bad metric name {name!r}")
                f = family(name)
                rest = parts[3] if len(parts) > 3 else ""
                if parts[1] == "HELP":
                    if f.help is not None:
                        raise FormatError(f"second HELP for {name}")
                    f.help = _unescape(rest, "\\n")
                else:
                    if f.type is not None or f.samples:
                        raise FormatError(f"TYPE for {name} twice or after its samples")
                    if rest not in TYPES:
                        raise FormatError(f"unknown type {rest!r}")
                    f.type = rest
            continue
        m = NAME.match(line)
        if not m:
            raise FormatError(f"bad sample line {line!r}")
        name, pos = m.group(0), m.end()
        labels: dict[str, str] = {}
        if line[pos: pos + 1] == "{":
            try:
                labels, pos = _labels(line, pos, line)
            except IndexError:
                raise FormatError(f"unterminated labels: {line!r}") from None
        tokens = line[pos:].split()
        if line[pos: pos + 1] != " " or not 1 <= len(tokens) <= 2:
            raise FormatError(f"expected ' value [timestamp]': {line!r}")
        value = _value(tokens[0], line)
        if len(tokens) == 2 and not re.fullmatch(r"-?\d+", tokens[1]):
            raise FormatError(f"bad timestamp: {line!r}")
        f = family(name)
        key = tuple(sorted(labels.items()))
        if key in f.samples:
            raise FormatError(f"duplicate series {name}{labels}")
        f.samples[key] = value
    return fams


def sample(fams: dict[str, Fam], name: str, **labels: str) -> float:
    key = tuple(sorted((k, str(v)) for k, v in labels.items()))
    return fams[name].samples[key]


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


# --- the vault in every state ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def every_state(tmp_path_factory):
    yield from shared_every_state(tmp_path_factory)


@pytest.fixture(scope="module")
def fams(every_state):
    result = modulatio("metrics", "--vault", every_state.root)
    assert result.returncode == 0, result.stderr
    return parse(result.stdout)


def test_every_family_has_help_and_type_and_counters_end_in_total(fams):
    assert len(fams) >= 20
    for f in fams.values():
        assert f.name.startswith("modulatio_") and f.help and f.type in ("gauge", "counter")
        assert f.name.endswith("_total") == (f.type == "counter"), f.name


def test_plans_by_project_and_status(fams, every_state):
    assert sample(fams, "modulatio_plans", project="SALES", status="completed") == 2
    assert sample(fams, "modulatio_plans", project="SALES", status="failed") == 1
    assert sample(fams, "modulatio_plans", project="SALES", status="paused") == 1
    assert sample(fams, "modulatio_plans", project="SALES", status="aborted") == 1
    assert sample(fams, "modulatio_plans", project="SALES", status="draft") == 1
    assert sample(fams, "modulatio_plans", project="SALES", status="approved") == 1
    assert sample(fams, "modulatio_plans", project="OPS", status="executing") == 1
    assert sample(fams, "modulatio_plans", project="OPS", status="approved") == 1
    assert sample(fams, "modulatio_plans", project="LATER", status="invalid") == 2
    assert sample(fams, "modulatio_plans", project="LATER", status="completed") == 0
    assert sum(fams["modulatio_plans"].samples.values()) == 13
    assert sample(fams, "modulatio_plans_orphaned", project="LATER") == 1
    assert sample(fams, "modulatio_plans_orphaned", project="OPS") == 0
    # The step started after the vault was built: it cannot have run longer than that.
    since_built = (datetime.now(UTC) - every_state.started).total_seconds()
    assert 0 <= sample(fams, "modulatio_plan_step_running_seconds", project="OPS",
                       plan="OPS-P-001") <= since_built + 1


def test_steps_run_and_failed_from_the_event_log(fams):
    # SALES-P-001 1 step, -P-002 1 (failed), -P-003 2 (one failed), the cron kickoff 1.
    assert sample(fams, "modulatio_steps_run_total", project="SALES") == 5
    assert sample(fams, "modulatio_steps_failed_total", project="SALES") == 2
    assert sample(fams, "modulatio_steps_run_total", project="OPS") == 0  # still running
    assert sample(fams, "modulatio_steps_failed_total", project="LATER") == 0


def test_usage_tokens_and_cost_per_project(fams):
    # LATER's usage file was written by hand: two good lines and a malformed one.
    assert sample(fams, "modulatio_usage_tokens_total", project="LATER",
                  direction="input") == sum(u["input_tokens"] for u in LATER_USAGE)
    assert sample(fams, "modulatio_usage_tokens_total", project="LATER",
                  direction="output") == sum(u["output_tokens"] for u in LATER_USAGE)
    assert sample(fams, "modulatio_usage_cost_usd_total", project="LATER") == 1.75
    assert sample(fams, "modulatio_usage_calls_total", project="LATER") == 2
    # SALES-P-001's step reported 1000/200/$0.25; the other steps reported nothing
    # (a zero line each) except the kickoff, run by the mock agent.
    assert sample(fams, "modulatio_usage_tokens_total", project="SALES",
                  direction="input") > 1000
    assert sample(fams, "modulatio_usage_cost_usd_total", project="SALES") > 0.25
    assert sample(fams, "modulatio_usage_calls_total", project="SALES") == 5


def test_daemons_and_seconds_since_their_last_tick(fams, every_state):
    assert sample(fams, "modulatio_daemons", state="live") == 2
    assert sample(fams, "modulatio_daemons", state="stale") == 1
    pid = every_state.ops_daemon.pid
    host = os.uname().nodename
    assert sample(fams, "modulatio_daemon_live", host=host, pid=pid) == 1
    assert 0 <= sample(fams, "modulatio_daemon_last_tick_age_seconds", host=host, pid=pid) < 30
    assert sample(fams, "modulatio_daemon_live", host=host, pid=every_state.stale_pid) == 0
    assert 7100 < sample(fams, "modulatio_daemon_last_tick_age_seconds", host=host,
                         pid=every_state.stale_pid) < 8000
    generated = sample(fams, "modulatio_metrics_generated_timestamp_seconds")
    ticked = sample(fams, "modulatio_daemon_last_tick_timestamp_seconds", host=host, pid=pid)
    assert generated - 30 < ticked < generated + 5  # it may tick while metrics read


def test_open_tickets_and_refused_files(fams):
    assert sample(fams, "modulatio_tickets_open", project="SALES", severity="warning") == 1
    assert sample(fams, "modulatio_tickets_open", project="SALES", severity="critical") == 0
    assert sample(fams, "modulatio_refused_files", kind="plan") == 3
    assert sample(fams, "modulatio_refused_files", kind="cron") == 1


def test_cron_fires_misses_skips_and_next_fire(fams, every_state):
    assert sample(fams, "modulatio_cron_fires_total", project="SALES", cron="SALES-C-001") == 1
    # An hour of minutes was due: the latest fired, the others were missed.
    assert 55 <= sample(fams, "modulatio_cron_missed_total", project="SALES",
                        cron="SALES-C-001") <= 61
    assert 55 <= sample(fams, "modulatio_cron_skipped_total", project="SALES",
                        cron="SALES-C-002", reason="disabled") <= 61
    assert sample(fams, "modulatio_cron_fires_total", project="LATER", cron="LATER-C-001") == 0
    nxt = datetime.fromtimestamp(sample(fams, "modulatio_cron_next_fire_timestamp_seconds",
                                        project="LATER", cron="LATER-C-001"), UTC)
    assert (nxt.hour, nxt.minute) == (6, 0)
    assert timedelta(0) < nxt - datetime.now(UTC) <= timedelta(days=1)


def test_output_file_is_written_atomically_for_the_textfile_collector(every_state, tmp_path):
    out = tmp_path / "collector" / "modulatio.prom"
    out.parent.mkdir()
    out.write_text("old content that must be replaced whole\n")
    result = modulatio("metrics", "--vault", every_state.root, "--output", out)
    assert result.returncode == 0 and result.stdout == "", result.stderr
    fams = parse(out.read_text())
    assert "modulatio_plans" in fams
    assert os.listdir(out.parent) == ["modulatio.prom"]  # no temp file left behind
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


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


def test_a_lone_surrogate_reaches_a_real_stdout_and_file_as_an_escape(tmp_path):
    vault = init(tmp_path / "v")
    _events(vault, b'{"ts": "2026-01-01T00:00:00Z", "event": "cron_fired", '
                   b'"project": "P", "cron": "c\\udcff"}\n')
    result = modulatio("metrics", "--vault", vault.root)
    assert result.returncode == 0, result.stderr
    assert 'modulatio_cron_fires_total{project="P",cron="c\\\\udcff"} 1' in result.stdout
    out = tmp_path / "m.prom"
    result = modulatio("metrics", "--vault", vault.root, "--output", out)
    assert result.returncode == 0, result.stderr
    assert 'cron="c\\\\udcff"' in out.read_text()


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

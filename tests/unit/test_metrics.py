"""`modulatio metrics`: Prometheus text exposition format 0.0.4, checked by a strict
parser (tests/prometheus.py); the writer and an empty vault here, the every-state
vault made by real daemons in tests/e2e/test_metrics_every_state.py.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

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

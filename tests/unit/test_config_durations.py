"""Every duration setting of config.yaml: refused with its file, line and key, or read."""

from pathlib import Path

import pytest

from modulatio_d.core.errors import BadFile
from modulatio_d.store import config

PATH = Path("/v/.modulatio/config.yaml")
SETTINGS = [  # (text with {v}, the line it is on, the message's key, how to read the value)
    ("poll_interval: {v}\n", 1, "poll_interval", lambda c: c.poll_interval),
    ("timezone: UTC\ndefaults:\n  timeout: {v}\n", 2, "defaults.timeout",
     lambda c: c.default_timeout),
    ("timezone: UTC\nretention:\n  older_than: {v}\n", 2, "retention",
     lambda c: c.retention.older_than),
]


@pytest.mark.parametrize("text,line,key,read", SETTINGS)
@pytest.mark.parametrize("value", ["soon", "'-5s'", "[1]", "{a: 1}"])
def test_a_bad_duration_names_file_line_and_key(text, line, key, read, value):
    with pytest.raises(BadFile) as e:
        config.parse(PATH, text.format(v=value))
    assert str(e.value).startswith(f"{PATH}:{line}: {key}: ")


@pytest.mark.parametrize("text,line,key,read", SETTINGS)
@pytest.mark.parametrize("value,seconds", [("90s", 90.0), ("10m", 600.0), ("2h", 7200.0),
                                           ("45", 45.0)])
def test_a_good_duration_is_read_in_seconds(text, line, key, read, value, seconds):
    assert read(config.parse(PATH, text.format(v=value))) == seconds

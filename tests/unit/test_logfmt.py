"""The daemon's log formats (daemon/logfmt.py) and the story lines of events
(daemon/story.py): journald detection by the stream's dev:ino, priority prefixes,
JSON fields, 1-based steps."""

from __future__ import annotations

import io
import json
import logging
import os

from modulatio_d.daemon import logfmt, story


def record(level=logging.INFO, msg="plan X completed", exc_info=None, **extra):
    r = logging.LogRecord("modulatio.story", level, __file__, 1, msg, (), exc_info)
    for k, v in extra.items():
        setattr(r, k, v)
    return r


def test_the_journal_is_the_stream_whose_dev_ino_journal_stream_names(tmp_path):
    with open(tmp_path / "err", "w") as stream, open(tmp_path / "other", "w") as other:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert logfmt.is_journal(stream, env)
        assert not logfmt.is_journal(other, env)  # inherited, but stderr went elsewhere
        assert not logfmt.is_journal(stream, {})
        for bad in ("", "12", "a:b", f"{st.st_dev}:", ":1"):
            assert not logfmt.is_journal(stream, {"JOURNAL_STREAM": bad}), bad
    assert not logfmt.is_journal(io.StringIO(), env)  # no descriptor at all


def test_journal_text_lines_carry_the_priority_and_no_timestamp():
    f = logfmt.TextFormatter(journal=True)
    assert f.format(record(logging.ERROR, "plan X failed")) == \
        "<3>ERROR modulatio.story: plan X failed"
    assert f.format(record(logging.WARNING)).startswith("<4>WARNING ")
    assert f.format(record(logging.INFO)).startswith("<6>INFO ")
    assert f.format(record(logging.DEBUG)).startswith("<7>DEBUG ")
    assert f.format(record(logging.CRITICAL)).startswith("<2>CRITICAL ")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        text = f.format(record(logging.ERROR, "crashed", exc_info=sys.exc_info()))
    lines = text.splitlines()
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines), text


def test_plain_text_lines_keep_their_timestamp_and_no_prefix():
    text = logfmt.TextFormatter().format(record())
    assert text.endswith(" INFO modulatio.story: plan X completed")
    assert text[:4].isdigit() and not text.startswith("<")


def test_json_lines_carry_the_story_fields():
    fields = story.extras("step_ended", {"plan": "P-P-002", "project": "P", "index": 0,
                                         "attempt": 3})
    line = json.loads(logfmt.JsonFormatter().format(record(logging.ERROR, "x", **fields)))
    assert {k: line[k] for k in ("level", "message", "modulatio_event", "plan_id", "project",
                                 "step", "attempt")} == {
        "level": "ERROR", "message": "x", "modulatio_event": "step_ended",
        "plan_id": "P-P-002", "project": "P", "step": 1, "attempt": 3}
    journal = logfmt.JsonFormatter(journal=True).format(record(logging.WARNING))
    assert journal.startswith("<4>{") and json.loads(journal[3:])["level"] == "WARNING"


def test_story_lines_of_the_outcomes():
    assert story.tell("status_changed", {"plan": "A", "status": "completed", "by": "daemon"}) \
        == (logging.INFO, "plan A completed")
    assert story.tell("status_changed", {"plan": "A", "status": "failed", "by": "daemon",
                                         "reason": "step 1 (x): boom"}) \
        == (logging.ERROR, "plan A failed: step 1 (x): boom")
    # the pause is told by its ticket, the claim where it happens: once each
    assert story.tell("status_changed", {"plan": "A", "status": "paused", "by": "daemon"}) \
        is None
    assert story.tell("status_changed", {"plan": "A", "status": "executing", "by": "daemon"}) \
        is None
    assert story.tell("claimed", {"plan": "A"}) is None
    level, text = story.tell("ticket_opened", {"plan": "A", "ticket": "A-T-01",
                                               "severity": "warning", "reason": "r"})
    assert level == logging.WARNING and "ticket A-T-01" in text
    level, text = story.tell("step_ended", {"plan": "A", "index": 2, "attempt": 1,
                                            "outcome": "failed", "exit": "exit 4",
                                            "decision": "retry", "title": "T",
                                            "log": "P/plans/A.runs/2-1.log"})
    assert (level, text) == (logging.WARNING, "plan A step 3 (T) attempt 1 ended failed "
                             "(exit 4): retry; log P/plans/A.runs/2-1.log")
    assert story.tell("step_ended", {"plan": "A", "index": 0, "attempt": 1, "outcome": "ok",
                                     "decision": "continue"})[0] == logging.DEBUG
    assert story.tell("cron_missed", {"cron": "C", "count": 3, "catch_up": "latest",
                                      "listed": ["t1", "t2"], "unlisted": 1})[0] \
        == logging.WARNING


def test_the_story_sink_records_the_event_then_logs_its_line(caplog):
    seen = []
    sink = story.Story(lambda event, **f: seen.append((event, f)))
    with caplog.at_level(logging.DEBUG, "modulatio.story"):
        sink("status_changed", plan="A", project="P", status="completed", by="daemon")
        sink("claimed", plan="A", project="P")
    assert [e for e, _ in seen] == ["status_changed", "claimed"]
    (r,) = caplog.records
    assert (r.getMessage(), r.modulatio_event, r.plan_id) == \
        ("plan A completed", "status_changed", "A")

"""The daemon's log line formats: text, JSON, and journald's priority prefixes.

- text: `<time> <LEVEL> <logger>: <message>`, one line per record: control
  characters of the message (vault text: titles, paths, reasons) shown
  escaped (core/controls.py), a traceback's lines indented.
- json: one object a line: `ts`, `level`, `logger`, `message`, then the
  record's extras (daemon/story.py gives `modulatio_event`, `plan_id`,
  `project`, `step`, `attempt`).
- journald: when stderr is the journal (systemd sets JOURNAL_STREAM to
  `<dev>:<ino>` of the stream it connects, and that pair matches stderr's
  fstat, as sd-daemon(3) documents), every line starts with the syslog
  priority `<N>` (3 error, 4 warning, 6 info, 7 debug; critical is 2) that
  journald strips and records, and text lines carry no time of their own
  (the journal stamps each line). A JOURNAL_STREAM inherited by a process
  whose stderr was redirected elsewhere does not match, so files and
  terminals keep timestamps.
"""

from __future__ import annotations

import json
import logging
import os

from modulatio_d.core.controls import neutralise

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_TEXT = "%(levelname)s %(name)s: %(message)s"

_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
             logging.DEBUG: 7}


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (levels between round down to the next)."""
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


def is_journal(stream, environ: dict[str, str]) -> bool:
    """True when `stream` is the journal stream systemd named in JOURNAL_STREAM."""
    value = environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # not a real file (a test's StringIO)
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class TextFormatter(logging.Formatter):
    """The text line; `message()` is the seam for making a message safe to print."""

    def __init__(self, journal: bool = False):
        super().__init__(JOURNAL_TEXT if journal else TEXT)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        # journald reads each line as its own entry: a traceback's lines keep the priority
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = self.message(record)
        return super().formatMessage(record)

    def message(self, record: logging.LogRecord) -> str:
        # Messages carry vault text (titles, paths, reasons): control characters shown
        # escaped, so a newline in a step title cannot forge a log line and an escape
        # sequence cannot reach the terminal of whoever tails the log.
        return neutralise(record.message)

    def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 (logging's name)
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    """A traceback's lines, each indented (none can pass for a record) and made safe
    (an exception's message is vault text as often as not)."""
    return "\n".join("    " + neutralise(line) for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object a line; extra fields (modulatio_event, plan_id, ...) included."""

    _PLAIN = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def __init__(self, journal: bool = False):
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        line.update({k: v for k, v in vars(record).items() if k not in self._PLAIN})
        text = json.dumps(line, default=str)
        return f"<{priority(record.levelno)}>{text}" if self.journal else text

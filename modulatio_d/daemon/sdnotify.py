"""Tell systemd how the daemon is doing: the sd_notify protocol, spoken directly.

Protocol (sd_notify(3)): one datagram per message to the AF_UNIX socket named
by $NOTIFY_SOCKET; a name starting with `@` is an abstract socket (the `@`
becomes a NUL byte). A message is newline-separated `KEY=value` lines:
`READY=1` once the first scan is done, `STATUS=<one line>` whenever the active
plan or step changes, `WATCHDOG=1` at least once per WatchdogSec (from the loop
and during long steps), `STOPPING=1` when shutdown begins.

Assumptions and promises:
- No $NOTIFY_SOCKET (not started by systemd, or Type= is not notify): every
  call is a no-op that returns False.
- Sends use MSG_DONTWAIT: a manager that stops reading fills the socket buffer,
  and a blocking sendto would then hang the daemon (seen after ~11 messages).
- Failures (ENOENT, ECONNREFUSED, EAGAIN, ...) are never raised: the daemon
  must outlive the manager. Each distinct errno is logged once at WARNING on
  `modulatio.sdnotify`, repeats at DEBUG, so a dead socket cannot flood logs.
- WATCHDOG_USEC is honoured only when WATCHDOG_PID is unset or names this
  process: a step that inherited the environment must not act as the daemon.
  Pings are rate-limited to one per half interval, so calling watchdog() from
  a hot loop costs a clock read.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping

LOG = logging.getLogger("modulatio.sdnotify")

# What a step's environment should not inherit from the daemon's: with
# NotifyAccess=main systemd ignores a child's messages anyway, but a child that
# speaks sd_notify would log "reception only permitted for main PID" noise.
NOTIFY_ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds within which process `pid` must send WATCHDOG=1, or None.

    None when WATCHDOG_USEC is unset, not a positive integer, or when
    WATCHDOG_PID is set to another process (sd_watchdog_enabled(3) rules).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    wpid = environ.get("WATCHDOG_PID", "")
    if wpid and (not wpid.isdigit() or int(wpid) != pid):
        return None
    return int(usec) / 1_000_000


def _one_line(text: str) -> str:
    # A newline would start a new KEY=value line: a plan title could otherwise
    # smuggle "READY=1" or "STOPPING=1" into a STATUS message.
    return " ".join(text.splitlines())


class Notifier:
    """A connectionless sender to systemd, built from an environment mapping."""

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        pid: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._address = _address(environ.get("NOTIFY_SOCKET", ""))
        self._interval = watchdog_interval(environ, os.getpid() if pid is None else pid)
        self._clock = clock
        self._last_ping: float | None = None
        self._warned: set[int] = set()
        self._sock = None
        if self._address is not None:
            # Imported here, not at module level: `socket` costs ~8 ms and the
            # commands that monitors run every few seconds never notify.
            import socket

            self._dontwait = socket.MSG_DONTWAIT
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # close-on-exec
            except OSError as exc:  # EMFILE, ENFILE: run on without telling systemd
                LOG.warning("cannot open a socket to notify systemd: %s; the daemon carries on",
                            exc)

    @property
    def enabled(self) -> bool:
        """True while there is a socket to send to."""
        return self._sock is not None

    def watchdog_interval(self) -> float | None:
        """Seconds the daemon must ping within, or None when no watchdog applies."""
        return self._interval

    def notify(self, message: str) -> bool:
        """Send one raw message; True when the datagram was handed to the kernel."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto(message.encode("utf-8", "surrogateescape"), self._dontwait,
                              self._address)
        except OSError as exc:
            level = logging.DEBUG if exc.errno in self._warned else logging.WARNING
            self._warned.add(exc.errno)
            LOG.log(level, "cannot notify systemd at %r (%r): %s; the daemon carries on",
                    self._address, message.split("=", 1)[0], exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (with a STATUS= line in the same datagram when given)."""
        if status is None:
            return self.notify("READY=1")
        return self.notify(f"READY=1\nSTATUS={_one_line(status)}")

    def status(self, text: str) -> bool:
        """STATUS=<text>, shown by `systemctl status`; newlines become spaces."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self, now: float | None = None) -> bool:
        """WATCHDOG=1 unless one was sent less than half an interval ago.

        Returns True only when a ping went out. No watchdog configured for
        this process means nothing is sent.
        """
        if self._interval is None or self._sock is None:
            return False
        now = self._clock() if now is None else now
        if self._last_ping is not None and now - self._last_ping < self._interval / 2:
            return False
        sent = self.notify("WATCHDOG=1")
        if sent:
            # A failed ping is retried on the next call rather than in half
            # an interval: the buffer may have drained by then.
            self._last_ping = now
        return sent

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1 (with a STATUS= line when given)."""
        if status is None:
            return self.notify("STOPPING=1")
        return self.notify(f"STOPPING=1\nSTATUS={_one_line(status)}")

    def close(self) -> None:
        """Release the socket; later calls are no-ops. Safe to call twice."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:  # noqa: PYI034 (typing.Self would import typing: +2 ms)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _address(value: str) -> str | None:
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    if value:
        # vsock:... and other forms appeared after systemd 252; not spoken here.
        LOG.warning("NOTIFY_SOCKET=%r is not an AF_UNIX socket; not notifying systemd", value)
    return None

"""The sd_notify sender (daemon/sdnotify.py) against a real datagram socket in tmp_path:
exact payloads, the watchdog rate, every way the socket can be missing or broken. Its
import cost in a fresh interpreter: tests/e2e/test_sdnotify.py."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from modulatio_d.daemon.sdnotify import Notifier, watchdog_interval


@pytest.fixture
def receiver(tmp_path):
    """A bound SOCK_DGRAM socket in tmp_path, as systemd's notify socket."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def assert_nothing_waiting(sock: socket.socket) -> None:
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
    finally:
        sock.settimeout(timeout)


def test_messages_arrive_with_exact_payloads(receiver):
    sock, path = receiver
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000000"}
    with Notifier(env) as notifier:
        assert notifier.enabled
        assert notifier.ready()
        assert notifier.status("SALES/SALES-P-001 step 2/5: Summarize them")
        assert notifier.watchdog()
        assert notifier.stopping()
        assert notifier.ready(status="idle")
        assert notifier.stopping(status="stopping step 2")
    assert [recv(sock) for _ in range(6)] == [
        "READY=1",
        "STATUS=SALES/SALES-P-001 step 2/5: Summarize them",
        "WATCHDOG=1",
        "STOPPING=1",
        "READY=1\nSTATUS=idle",
        "STOPPING=1\nSTATUS=stopping step 2",
    ]
    assert_nothing_waiting(sock)


def test_status_cannot_smuggle_other_assignments(receiver):
    sock, path = receiver
    with Notifier({"NOTIFY_SOCKET": path}) as notifier:
        notifier.status("title\nREADY=1\r\nSTOPPING=1")
    assert recv(sock) == "STATUS=title READY=1 STOPPING=1"


def test_abstract_socket():
    name = f"modulatio-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        with Notifier({"NOTIFY_SOCKET": "@" + name}) as notifier:
            assert notifier.ready()
            assert notifier.status("idle")
        assert [recv(sock), recv(sock)] == ["READY=1", "STATUS=idle"]
    finally:
        sock.close()


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"WATCHDOG_USEC": "1000000"}])
def test_unset_socket_is_a_no_op(env, caplog):
    with caplog.at_level(logging.DEBUG, logger="modulatio.sdnotify"):
        notifier = Notifier(env)
        assert not notifier.enabled
        assert not notifier.ready()
        assert not notifier.status("x")
        assert not notifier.watchdog()
        assert not notifier.stopping()
        notifier.close()
        notifier.close()
    assert caplog.records == []


def test_unsupported_socket_kind_is_a_no_op_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="modulatio.sdnotify"):
        notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
        assert not notifier.ready()
    assert len(caplog.records) == 1


@pytest.mark.timeout(10)
def test_a_receiver_that_never_reads_does_not_block_the_sender(receiver, caplog):
    _sock, path = receiver
    caplog.set_level(logging.DEBUG, logger="modulatio.sdnotify")
    with Notifier({"NOTIFY_SOCKET": path}) as notifier:
        results = [notifier.status(f"message {i}") for i in range(100)]
    # The queue of an unread datagram socket fills after a few messages; the
    # rest must fail fast with EAGAIN, not hang.
    assert results[0] is True
    assert results.count(False) > 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Resource temporarily unavailable" in warnings[0].getMessage()


def test_vanished_socket_is_logged_once_and_not_raised(tmp_path, caplog):
    gone = str(tmp_path / "gone.sock")
    refused = tmp_path / "refused.sock"
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    bound.bind(str(refused))
    bound.close()  # the path stays, nobody listens: ECONNREFUSED
    with caplog.at_level(logging.DEBUG, logger="modulatio.sdnotify"):
        for path in (gone, str(refused)):
            with Notifier({"NOTIFY_SOCKET": path}) as notifier:
                assert not notifier.ready()
                assert not notifier.status("a")
                assert not notifier.stopping()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "No such file or directory" in warnings[0]
    assert "Connection refused" in warnings[1]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 4


def test_send_after_close_is_a_no_op(receiver):
    sock, path = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.close()
    assert not notifier.enabled
    assert not notifier.ready()
    assert_nothing_waiting(sock)


def test_watchdog_is_rate_limited_to_half_the_interval(receiver):
    sock, path = receiver
    clock = [200.0]
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"},
                        clock=lambda: clock[0])
    assert notifier.watchdog_interval() == 10.0
    assert notifier.watchdog(now=100.0)
    assert not notifier.watchdog(now=100.0)
    assert not notifier.watchdog(now=104.99)
    assert notifier.watchdog(now=105.0)
    assert not notifier.watchdog(now=109.0)
    assert notifier.watchdog()  # the injected clock reads 200.0
    clock[0] = 204.0
    assert not notifier.watchdog()
    notifier.close()
    assert [recv(sock) for _ in range(3)] == ["WATCHDOG=1"] * 3
    assert_nothing_waiting(sock)


def test_watchdog_without_interval_sends_nothing(receiver):
    sock, path = receiver
    with Notifier({"NOTIFY_SOCKET": path}) as notifier:
        assert notifier.watchdog_interval() is None
        assert not notifier.watchdog()
    assert_nothing_waiting(sock)


def test_watchdog_for_another_pid_sends_nothing(receiver):
    sock, path = receiver
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    with Notifier(env, pid=4242) as notifier:
        assert notifier.watchdog_interval() is None
        assert not notifier.watchdog()
        assert notifier.ready()  # the rest of the protocol still works
    assert recv(sock) == "READY=1"
    assert_nothing_waiting(sock)


@pytest.mark.parametrize(
    ("env", "pid", "expected"),
    [
        ({}, 10, None),
        ({"WATCHDOG_USEC": "60000000"}, 10, 60.0),
        ({"WATCHDOG_USEC": "1500000"}, 10, 1.5),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "10"}, 10, 60.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "11"}, 10, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "x"}, 10, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": ""}, 10, 60.0),
        ({"WATCHDOG_USEC": "0"}, 10, None),
        ({"WATCHDOG_USEC": ""}, 10, None),
        ({"WATCHDOG_USEC": "-5"}, 10, None),
        ({"WATCHDOG_USEC": "60s"}, 10, None),
    ],
)
def test_watchdog_interval_parsing(env, pid, expected):
    assert watchdog_interval(env, pid) == expected


def test_watchdog_pid_defaults_to_this_process():
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(env).watchdog_interval() == 2.0
    env["WATCHDOG_PID"] = str(os.getpid() + 1)
    assert Notifier(env).watchdog_interval() is None

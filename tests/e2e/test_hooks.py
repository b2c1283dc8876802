"""Hooks with real daemons: a command hook and a webhook to a local server on 127.0.0.1.

Every event delivered at least once, in order, never by two deliverers at once;
a killed deliverer resumes from its cursor; a hook that keeps failing ends in its
dead-letter file with a ticket, and `hooks replay` delivers again; a hanging
command is killed at its timeout; a webhook that never answers does not slow
the daemons; an unreadable secret refuses the hook with a message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cli_runner import run_cli
from helpers import PY, cli, events, pid_gone, plan, wait_started, write_plan
from waiting import wait_for

from modulatio_d.core.hooks import HookSpec, matches
from modulatio_d.store.events import rotated_name

pytestmark = pytest.mark.timeout(120)

SECRET = "s3cret-for-tests"
WANTED = ["plan_*", "step_ended"]
SPEC = HookSpec("probe", tuple(WANTED), run="true")

HOOK_TOOL = r'''
"""Test hook: python -S hook.py '<json options>'; the event JSON on stdin."""
import fcntl, json, os, sys, time

opts = json.loads(sys.argv[1])
event = json.loads(sys.stdin.buffer.read())
guard = os.open(opts["guard"], os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
    state = "alone"
except BlockingIOError:
    state = "overlap"  # another deliverer runs this hook right now
if opts.get("require") and not os.path.exists(opts["require"]):
    sys.exit("the receiver is down")
time.sleep(opts.get("sleep", 0))
assert event["id"] == os.environ["MODULATIO_EVENT_ID"]
fd = os.open(opts["out"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, ("%s %s %d %s\n" % (event["id"], event["event"], os.getppid(), state)).encode())
'''


class Receiver:
    """A webhook receiver on 127.0.0.1 in a thread: answers 500 to the first `fail`
    requests, then 200; records every request (id, signature ok, answer) and the most
    requests it ever had in flight at once."""

    def __init__(self, fail: int = 0):
        self.fail = fail
        self.requests: list[dict] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                with receiver.lock:
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                try:
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                    good = "sha256=" + hmac.new(SECRET.encode(), body,
                                                hashlib.sha256).hexdigest()
                    event = json.loads(body)
                    with receiver.lock:
                        code = 500 if len(receiver.requests) < receiver.fail else 200
                        receiver.requests.append({
                            "id": event["id"], "event": event["event"], "code": code,
                            "signed": self.headers["X-Modulatio-Signature-256"] == good,
                            "key": self.headers["Idempotency-Key"]})
                    self.send_response(code)
                    self.end_headers()
                finally:
                    with receiver.lock:
                        receiver.in_flight -= 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self) -> list[str]:
        with self.lock:
            return [r["id"] for r in self.requests if r["code"] == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(fail: int = 0) -> Receiver:
        made.append(Receiver(fail))
        return made[-1]

    yield make
    for r in made:
        r.close()


def hook_argv(dvault, **opts: object) -> str:
    tool = dvault.root / "tools" / "hook.py"
    if not tool.exists():
        tool.write_text(HOOK_TOOL)
    opts.setdefault("guard", str(dvault.root / "hook.guard"))
    return json.dumps([PY, "-S", str(tool), json.dumps(opts)])


def write_config(dvault, hooks: str) -> None:
    (dvault.root / ".modulatio" / "config.yaml").write_text(
        "poll_interval: 0.2\nhooks:\n" + hooks)


def received(path: Path) -> list[tuple[str, str, int, str]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [(i, e, int(pid), state) for i, e, pid, state in (ln.split() for ln in lines)]


def wanted_ids(dvault) -> list[str]:
    return [e["id"] for e in events(dvault) if matches(SPEC, e)]


def cursor_of(dvault, name: str) -> dict | None:
    path = dvault.root / ".modulatio" / "hooks" / f"{name}.cursor.json"
    return json.loads(path.read_text()) if path.exists() else None


def logs(procs) -> str:
    return "\n".join(p.log()[-3000:] for p in procs)


def test_three_daemons_deliver_every_event_in_order_once_at_a_time(dvault, daemons,
                                                                   receiver):
    web = receiver(fail=5)
    out = dvault.root / "cmd.out"
    write_config(dvault, f"""  cmd:
    events: {json.dumps(WANTED)}
    run: {hook_argv(dvault, out=str(out))}
  web:
    events: {json.dumps(WANTED)}
    url: {web.url}
    secret_env: HOOK_SECRET
    timeout: 5
    retry: {{attempts: 20, delay: 0.05, max_delay: 0.3}}
""")
    beats = dvault.root / ".modulatio" / "daemons"
    beats.mkdir(exist_ok=True)
    (beats / "gone-host.4242.json").write_text(json.dumps({  # a daemon silent for an hour
        "host": "gone-host", "pid": 4242, "tick_seconds": 30,
        "last_tick": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}))
    procs = [daemons(env={"HOOK_SECRET": SECRET}) for _ in range(3)]
    for p in procs:
        wait_started(p, dvault)
    wait_for(lambda: cursor_of(dvault, "cmd") and cursor_of(dvault, "web"), 30,
             "both hooks started", diag=lambda: logs(procs))
    ids = [f"P-P-{n:03d}" for n in range(1, 21)]
    for plan_id in ids:
        write_plan(dvault, plan_id, [{"run": "true"}, {"run": "true"}])
    wait_for(lambda: all(plan(dvault, i).status.value == "completed" for i in ids), 60,
             "every plan completed", diag=lambda: logs(procs))
    # Two step_ended and a plan_completed per plan; a daemon writes its events just after
    # the plan file, so the last ones may follow the last completed plan by a moment.
    def all_written():
        found = wanted_ids(dvault)
        return found if len(found) >= 20 * 3 else None
    expected = wait_for(all_written, 30, "the plans' events written")
    assert len(expected) == 20 * 3
    wait_for(lambda: len(received(out)) >= len(expected) and len(web.delivered())
             >= len(expected), 60, "every event delivered to both hooks",
             diag=lambda: f"{len(received(out))} {len(web.delivered())}\n{logs(procs)}")

    got = received(out)
    assert [g[0] for g in got] == expected  # each once, in the order of events.jsonl
    assert {g[3] for g in got} == {"alone"}  # never two deliverers of the hook at once
    assert web.delivered() == expected
    assert [r["code"] for r in web.requests[:6]] == [500] * 5 + [200]
    assert {r["id"] for r in web.requests[:6]} == {expected[0]}  # retried, not skipped
    assert all(r["signed"] and r["key"] == r["id"] for r in web.requests)
    assert web.most_in_flight == 1
    holders = {json.loads((dvault.root / ".modulatio" / "hooks" / f"{n}.lock").read_text())
               ["pid"] for n in ("cmd", "web")}
    assert holders  # noted by whoever delivers: `hooks list` shows it
    # The cursor moves once a delivery has succeeded: just after the command saw the line.
    def listed_rows():
        rows = {r["name"]: r for r in json.loads(cli(dvault, "hooks", "list", "--json").out)}
        return rows if rows["cmd"]["cursor"]["id"] == expected[-1] else None
    rows = wait_for(listed_rows, 20, "the command hook's cursor at the last event")
    assert rows["web"]["dead_letters"] == 0
    assert rows["web"]["deliverer"]["pid"] in holders
    tested = run_cli("hooks", "test", "web", "--vault", dvault.root, cwd=dvault.root,
                     env={"HOOK_SECRET": SECRET})
    assert tested.code == 0, tested
    assert web.requests[-1]["event"] == "hook_test" and web.requests[-1]["signed"]
    unsigned = run_cli("hooks", "test", "web", "--vault", dvault.root, cwd=dvault.root)
    assert unsigned.code == 1 and "HOOK_SECRET" in unsigned.out
    stale = events(dvault, "daemon_stale")  # told once, by one of the three hook processes
    assert [(e["host_stale"], e["pid_stale"]) for e in stale] == [("gone-host", 4242)]


def test_a_killed_deliverer_resumes_from_the_cursor(dvault, daemons):
    out = dvault.root / "cmd.out"
    write_config(dvault, f"""  cmd:
    events: {json.dumps(WANTED)}
    run: {hook_argv(dvault, out=str(out), sleep=0.2)}
""")
    procs = [daemons() for _ in range(2)]
    for p in procs:
        wait_started(p, dvault)
    wait_for(lambda: cursor_of(dvault, "cmd"), 30, "the hook started", diag=lambda: logs(procs))
    ids = [f"P-P-{n:03d}" for n in range(1, 9)]
    for plan_id in ids:
        write_plan(dvault, plan_id, [{"run": "true"}])
    wait_for(lambda: all(plan(dvault, i).status.value == "completed" for i in ids), 30,
             "every plan completed", diag=lambda: logs(procs))
    expected = wanted_ids(dvault)
    wait_for(lambda: len(received(out)) >= 3, 30, "a few delivered", diag=lambda: logs(procs))
    lock = dvault.root / ".modulatio" / "hooks" / "cmd.lock"
    first = wait_for(lambda: _holder(lock), 10, "the hook lock to name its holder")
    os.kill(first, signal.SIGKILL)  # mid-batch: more than half the events are pending
    wait_for(lambda: pid_gone(first), 10, "the deliverer gone")
    before = len(received(out))
    assert before < len(expected)
    live = dvault.vault.events_path  # rotated meanwhile: the rest is read from the old file
    live.rename(live.with_name(rotated_name(datetime.now(UTC))))
    wait_for(lambda: {g[0] for g in received(out)} >= set(expected), 60,
             "the rest delivered by the next deliverer", diag=lambda: logs(procs))

    got = [g[0] for g in received(out)]
    # At least once, in order: at most the event in flight at the kill comes twice.
    k = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
             len(expected))
    assert got == expected or got == expected[:k] + expected[k - 1:], (got, expected)
    assert k >= 3
    assert {g[3] for g in received(out)} == {"alone"}
    assert {g[2] for g in received(out)[before:]} - {first}, "another process took over"
    write_plan(dvault, "P-P-100", [{"run": "true"}])  # into a new live log
    wait_for(lambda: len({g[0] for g in received(out)}) == len(expected) + 2, 30,
             "the new live log's events delivered too", diag=lambda: logs(procs))
    # The cursor is written past an event once it is delivered: after the command ran.
    wait_for(lambda: cursor_of(dvault, "cmd")["segment"] == "events.jsonl", 10,
             "the cursor to move into the new live log", diag=lambda: logs(procs))


def test_a_failing_hook_ends_in_dead_letters_with_a_ticket_and_replay_delivers(dvault,
                                                                               daemons):
    out, up = dvault.root / "cmd.out", dvault.root / "receiver-up"
    write_config(dvault, f"""  flaky:
    events: {json.dumps(WANTED)}
    run: {hook_argv(dvault, out=str(out), require=str(up))}
    retry: {{attempts: 3, delay: 0.05, max_delay: 0.1}}
""")
    d = daemons()
    wait_started(d, dvault)
    wait_for(lambda: cursor_of(dvault, "flaky"), 30, "the hook started", diag=d.log)
    write_plan(dvault, "P-P-001", [{"run": "true"}])
    dead = dvault.root / ".modulatio" / "hooks" / "flaky.dead.jsonl"

    def letters():
        return [json.loads(x) for x in dead.read_text().splitlines()] if dead.exists() else []

    wait_for(lambda: len(letters()) == 2, 30, "both events given up on", diag=d.log)
    expected = wanted_ids(dvault)
    assert [x["event"]["id"] for x in letters()] == expected
    assert {x["attempts"] for x in letters()} == {3}
    assert "the receiver is down" in letters()[0]["error"]
    tickets = sorted((dvault.root / "P" / "tickets").glob("hook-flaky-T-*.md"))
    assert len(tickets) == 1, "one ticket while it is open, not one per event"
    assert "modulatio hooks replay flaky" in tickets[0].read_text()
    assert len(events(dvault, "hook_dead_letter", hook="flaky")) == 2
    assert not out.exists()

    listed = cli(dvault, "hooks", "dead-letters", "flaky")
    assert listed.code == 0 and all(i in listed.out for i in expected)
    up.touch()  # the receiver is back
    tested = cli(dvault, "hooks", "test", "flaky")
    assert tested.code == 0, tested
    replayed = cli(dvault, "hooks", "replay", "flaky", "--from", expected[0])
    assert replayed.code == 0 and "asked of the running deliverer" in replayed.out
    wait_for(lambda: [g[0] for g in received(out)][1:] == expected, 30, "replayed",
             diag=d.log)
    assert received(out)[0][1] == "hook_test"
    bad = cli(dvault, "hooks", "replay", "flaky", "--from", "nosuchid")
    assert bad.code == 2 and "no event 'nosuchid'" in bad.err


def test_bad_hooks_never_slow_the_daemons(dvault, daemons, tmp_path):
    """A command that hangs is killed at its timeout; a webhook that never answers holds
    only its own hook; an unreadable secret and a bad entry refuse those hooks alone."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections are queued and never answered
    marker = dvault.root / "hang.pid"
    write_config(dvault, f"""  hang:
    events: [plan_completed]
    run: "echo $$ >> {marker}; exec sleep 60"
    timeout: 0.5
    retry: {{attempts: 1}}
  silent:
    events: ["*"]
    url: http://127.0.0.1:{silent.getsockname()[1]}/
    secret_env: HOOK_SECRET
    timeout: 60
  unreadable:
    events: ["*"]
    url: http://127.0.0.1:9/
    secret_file: {tmp_path / "no" / "such" / "secret"}
  invault:
    events: ["*"]
    url: http://127.0.0.1:9/
    secret_file: {dvault.root / "secret"}
  typo:
    events: ["*"]
    run: true
    retries: 3
""")
    try:
        d = daemons(env={"HOOK_SECRET": SECRET})
        wait_started(d, dvault)
        wait_for(lambda: cursor_of(dvault, "hang") and cursor_of(dvault, "silent"), 30,
                 "the hooks started", diag=d.log)
        ids = [f"P-P-{n:03d}" for n in range(1, 6)]
        for plan_id in ids:
            write_plan(dvault, plan_id, [{"run": "true"}])
        wait_for(lambda: all(plan(dvault, i).status.value == "completed" for i in ids), 20,
                 "plans completed while the webhook hangs", diag=d.log)
        dead = dvault.root / ".modulatio" / "hooks" / "hang.dead.jsonl"
        wait_for(dead.exists, 30, "the hanging command given up on", diag=d.log)
        assert "timed out after 0.5s (killed)" in dead.read_text()
        assert pid_gone(int(marker.read_text().split()[0]))  # the first event's command
        wait_for(lambda: "secret_file" in d.log() and "retries" in d.log(), 10,
                 "the refusals told", diag=d.log)
        assert "cannot read secret_file" in d.log() and "is inside the vault" in d.log()
        assert "config.yaml:24: hook 'typo': unknown keys ['retries']" in d.log()
        assert events(dvault, "hook_refused", hook="unreadable")
        listed = cli(dvault, "hooks", "list")
        assert "typo" in listed.out and "REFUSED" in listed.out
        validated = cli(dvault, "validate")
        assert validated.code == 1 and "hook 'typo'" in validated.out + validated.err
    finally:
        silent.close()


def hook_processes(root: Path) -> list[int]:
    """Pids of the hook processes serving this vault."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"modulatio_d.daemon.hook_child" in argv and os.fsencode(str(root)) in argv \
                and not pid_gone(int(name)):
            found.append(int(name))
    return found


def test_a_worker_pool_keeps_one_hook_process(dvault, daemons):
    out = dvault.root / "cmd.out"
    write_config(dvault, f"""  cmd:
    events: {json.dumps(WANTED)}
    run: {hook_argv(dvault, out=str(out))}
""")
    d = daemons("--workers", "3")
    wait_for(lambda: cursor_of(dvault, "cmd"), 30, "the hook started", diag=d.log)
    ids = [f"P-P-{n:03d}" for n in range(1, 7)]
    for plan_id in ids:
        write_plan(dvault, plan_id, [{"run": "true"}])
    wait_for(lambda: all(plan(dvault, i).status.value == "completed" for i in ids), 30,
             "every plan completed", diag=d.log)
    expected = wanted_ids(dvault)
    wait_for(lambda: [g[0] for g in received(out)] == expected, 30, "all delivered",
             diag=d.log)
    assert len(hook_processes(dvault.root)) == 1  # slot 1's; the other workers keep none


def _holder(lock) -> int | None:
    """The pid the hook's lock file names; None while its holder is still writing it."""
    try:
        return json.loads(lock.read_text())["pid"]
    except ValueError:  # read between its truncation and its write
        return None

"""Hooks in-process: the declared shape, matching, backoff, event ids and high-level
events, the cursor across a rotation of events.jsonl, and a worker's retries and dead
letters on a fake clock with a fake delivery (no process, no network)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modulatio_d.core.hooks import HookSpec, backoff, glob_match, matches, parse_hooks
from modulatio_d.core.markdown import line_of, load_mapping
from modulatio_d.daemon import hook_worker
from modulatio_d.daemon.hook_delivery import signature
from modulatio_d.store import config, events
from modulatio_d.store import hooks as hook_files
from modulatio_d.store.events import EventLog


def parsed(text: str):
    data = load_mapping(Path("config.yaml"), text)
    return parse_hooks(data.get("hooks"), line_of)


def test_a_good_hook_is_read_whole():
    specs, refused = parsed("""hooks:
  notify:
    events: [plan_failed, "step_*"]
    filter: {project: [SALES], plan: "SALES-*", severity: warning}
    url: https://example.com/hook
    secret_env: HOOK_SECRET
    timeout: 5s
    retry: {attempts: 4, delay: 2, max_delay: 1m}
""")
    assert refused == []
    (s,) = specs
    assert (s.name, s.events, s.url, s.secret_env, s.projects, s.plans, s.severity) == (
        "notify", ("plan_failed", "step_*"), "https://example.com/hook", "HOOK_SECRET",
        ("SALES",), ("SALES-*",), "warning")
    assert (s.timeout, s.attempts, s.delay, s.max_delay, s.line) == (5.0, 4, 2.0, 60.0, 2)


@pytest.mark.parametrize("entry, line, words", [
    ("events: [x]\n    run: cat\n    retries: 3", 6, "unknown keys ['retries']"),
    ("events: []\n    run: cat", 4, "events must be a list"),
    ("events: [x]", 3, "exactly one of run"),
    ("events: [x]\n    run: cat\n    url: http://x.org/", 5, "exactly one of run"),
    ("events: [x]\n    url: ftp://x.org/\n    secret_env: S", 5, "not an http://"),
    ("events: [x]\n    url: http://x.org/", 5, "needs a secret"),
    ("events: [x]\n    url: http://x.org/\n    secret: abc", 6, "unknown keys ['secret']"),
    ("events: [x]\n    url: http://x.org/\n    secret_file: rel/path", 6, "absolute path"),
    ("events: [x]\n    run: cat\n    secret_env: S", 6, "takes none"),
    ("events: [x]\n    run: cat\n    timeout: soon", 6, "timeout"),
    ("events: [x]\n    run: cat\n    retry: {attempts: 0}", 6, "retry.attempts"),
    ("events: [x]\n    run: cat\n    retry: {delay: 10m, max_delay: 1m}", 6, "max_delay"),
    ("events: [x]\n    run: cat\n    filter: {severity: loud}", 6, "filter.severity"),
    ("events: [x]\n    run: 3", 5, "run must be"),
])
def test_a_bad_hook_is_refused_whole_at_its_line_and_the_others_stand(entry, line, words):
    specs, refused = parsed(f"hooks:\n  good: {{events: [x], run: cat}}\n  bad:\n    {entry}\n")
    assert [s.name for s in specs] == ["good"]
    (r,) = refused
    assert r.name == "bad" and words in r.reason and r.line == line, r


def test_the_config_keeps_refused_hooks_as_file_errors(vault):
    vault.config_path.write_text("hooks:\n  a: {events: [x], run: cat}\n  b: {events: [x]}\n")
    cfg = config.load(vault.config_path)
    assert [h.name for h in cfg.hooks] == ["a"]
    assert [str(e) for e in cfg.refused_hooks] == [
        f"{vault.config_path}:3: hook 'b': needs exactly one of run (a command) or url "
        f"(a webhook)"]


def test_matching_by_name_glob_and_filters():
    spec = HookSpec("h", ("step_*", "plan_failed"), run="cat", projects=("P",), plans=("P-*",))
    assert matches(spec, {"event": "step_ended", "project": "P", "plan": "P-P-001"})
    assert matches(spec, {"event": "plan_failed", "project": "P", "plan": "P-P-9"})
    assert not matches(spec, {"event": "plan_completed", "project": "P", "plan": "P-P-1"})
    assert not matches(spec, {"event": "step_ended", "project": "Q", "plan": "P-P-1"})
    assert not matches(spec, {"event": "step_ended", "project": "P", "plan": "X-1"})
    loud = HookSpec("h", ("*",), run="cat", severity="warning")
    assert matches(loud, {"event": "plan_failed"}) and matches(loud, {"event": "plan_paused"})
    assert not matches(loud, {"event": "plan_completed"})
    assert glob_match("a?c*", "abcdef") and not glob_match("a.c", "abc")


def test_backoff_doubles_up_to_the_limit_times_the_jitter():
    spec = HookSpec("h", ("*",), run="cat", delay=1.0, max_delay=10.0)
    assert [backoff(spec, n, 1.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert backoff(spec, 3, 0.5) == 2.0


def test_the_signature_is_hmac_sha256_of_the_body():
    assert signature(b"key", b"body") == (
        "sha256=515aae133b435d4000956731f68ae5cf5eb85d4f0dc6a546d2bfcd3595ec1ae1")


def test_every_event_has_an_id_and_a_status_change_has_its_high_level_event(vault):
    log = EventLog(vault.events_path)
    log("status_changed", project="P", plan="P-P-001", previous="executing",
        status="failed", by="daemon", reason="boom")
    log("status_changed", project="P", plan="P-P-001", previous="approved",
        status="executing", by="daemon")
    got = events.read(vault.events_path)
    assert [e["event"] for e in got] == ["status_changed", "plan_failed", "status_changed"]
    assert len({e["id"] for e in got}) == 3
    assert got[1]["reason"] == "boom" and got[1]["plan"] == "P-P-001"


# --- the cursor and a worker on a fake delivery ------------------------------------------


class Clock:
    def __init__(self):
        self.now = datetime(2026, 12, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def worker(vault, monkeypatch, spec: HookSpec, outcome) -> tuple[hook_worker.Worker, list]:
    delivered: list[str] = []

    def fake_deliver(spec_, event_id, kind, body, secret, environ, cwd):
        assert json.loads(body)["id"] == event_id
        error = outcome(event_id)
        if error is None:
            delivered.append(event_id)
        return error

    monkeypatch.setattr(hook_worker, "deliver", fake_deliver)
    monkeypatch.setattr(hook_worker.random, "random", lambda: 1.0)  # jitter 1: exact waits
    w = hook_worker.Worker(vault, spec, EventLog(vault.events_path), {}, Clock(), lambda: 1.0)
    return w, delivered


def run_steps(w: hook_worker.Worker, n: int) -> None:
    assert w._hold()
    for _ in range(n):
        w._step()


def test_delivery_goes_on_across_a_rotation_in_order_and_once(vault, monkeypatch):
    (vault.root / "P" / "plans").mkdir(parents=True)
    spec = HookSpec("h", ("step_*",), run="cat")
    w, delivered = worker(vault, monkeypatch, spec, lambda _: None)
    log = EventLog(vault.events_path)
    log("daemon_started")
    run_steps(w, 1)  # a new hook starts at the end of the log
    log("step_ended", index=0)
    log("claimed")
    log("step_ended", index=1)
    run_steps(w, 3)
    rotated = vault.meta / events.rotated_name(datetime(2026, 12, 1, tzinfo=UTC))
    log("step_ended", index=2)  # written before the rotation, not delivered yet
    os.rename(vault.events_path, rotated)
    log("step_ended", index=3)  # the new live log
    run_steps(w, 5)
    assert len(delivered) == 3  # the rotated file may still get a writer's late line
    w.clock.now = datetime.now(UTC) + timedelta(seconds=events.ROTATED_STILL_S)
    run_steps(w, 3)
    lines = (rotated.read_text() + vault.events_path.read_text()).splitlines()
    ids = [e["id"] for e in map(json.loads, lines) if e["event"] == "step_ended"]
    assert delivered == ids and len(ids) == 4
    cursor = hook_files.read_cursor(vault, "h")
    assert cursor["segment"] == "events.jsonl" and cursor["id"] == ids[-1]
    assert hook_files.oldest_needed(vault) == "events.jsonl"


def test_a_rotation_with_no_live_log_yet_delivers_nothing_twice(vault, monkeypatch):
    spec = HookSpec("h", ("step_*",), run="cat")
    w, delivered = worker(vault, monkeypatch, spec, lambda _: None)
    log = EventLog(vault.events_path)
    log("daemon_started")
    run_steps(w, 1)
    log("step_ended", index=0)
    os.rename(vault.events_path, vault.meta / events.rotated_name(datetime(2026, 12, 1)))
    w.clock.now = datetime.now(UTC) + timedelta(seconds=events.ROTATED_STILL_S)
    run_steps(w, 4)  # the rotated file read, then a live log that is not there yet
    assert len(delivered) == 1
    log("step_ended", index=1)
    run_steps(w, 3)
    assert len(delivered) == 2 and len(set(delivered)) == 2


def test_a_cursor_found_by_id_when_its_inode_is_gone(vault):
    log = EventLog(vault.events_path)
    for i in range(3):
        log("step_ended", index=i)
    second = events.read(vault.events_path)[1]["id"]
    place = hook_files.find(events.files(vault.events_path), second, after=True)
    cursor = hook_files.place_cursor(place, second)
    copy = vault.events_path.read_bytes()
    vault.events_path.unlink()
    vault.events_path.write_bytes(copy)  # restored from a backup: a new inode
    again = hook_files.locate(vault.events_path, cursor)
    assert (again.index, again.offset, again.skipped) == (place.index, place.offset, "")
    lost = hook_files.locate(vault.events_path, {**cursor, "id": "gone", "inode": 1})
    assert lost.offset == 0 and "is gone" in lost.skipped


def test_failures_back_off_then_the_event_is_a_dead_letter_with_one_ticket(vault,
                                                                           monkeypatch):
    (vault.root / "P" / "tickets").mkdir(parents=True)
    spec = HookSpec("h", ("plan_*",), run="cat", attempts=3, delay=1.0, max_delay=60.0)
    w, delivered = worker(vault, monkeypatch, spec, lambda _: "HTTP 503")
    run_steps(w, 1)
    log = EventLog(vault.events_path)
    log("plan_failed", project="P", plan="P-P-001")
    log("plan_failed", project="P", plan="P-P-002")
    assert w._step() == 1.0  # the first failure: wait delay
    assert w._step() == 1.0  # not yet due: wait the rest, capped at the poll
    w.clock.now += timedelta(seconds=1)
    assert w._step() == 2.0  # the second: doubled
    assert hook_files.read_cursor(vault, "h")["failures"] == 2
    w.clock.now += timedelta(seconds=2)
    assert w._step() == 0  # the third and last: given up on, the next one is tried now
    for _ in range(3):
        w.clock.now += timedelta(seconds=60)
        w._step()
    letters = hook_files.dead_letters(vault, "h")
    assert [d["event"]["plan"] for d in letters] == ["P-P-001", "P-P-002"]
    assert {d["attempts"] for d in letters} == {3} and delivered == []
    assert len(list((vault.root / "P" / "tickets").glob("hook-h-T-*.md"))) == 1
    assert [e["event"] for e in events.read(vault.events_path)].count("hook_dead_letter") == 2


def test_a_hook_is_not_handed_the_events_about_itself(vault, monkeypatch):
    spec = HookSpec("h", ("*",), run="cat")
    w, delivered = worker(vault, monkeypatch, spec, lambda _: None)
    run_steps(w, 1)
    log = EventLog(vault.events_path)
    log("hook_dead_letter", hook="h", event_id="x")
    log("hook_dead_letter", hook="other", event_id="y")
    run_steps(w, 2)
    assert [e["hook"] for e in events.read(vault.events_path)
            if e["id"] in delivered] == ["other"]


def test_a_cursor_file_read_stale_loses_to_the_note_in_the_lock(vault, monkeypatch):
    """On a shared filesystem the next holder may read an older cursor file for a while:
    the cursor noted in the lock file (read past the cache) wins when it is further on."""
    spec = HookSpec("h", ("step_*",), run="cat")
    a, delivered = worker(vault, monkeypatch, spec, lambda _: None)
    log = EventLog(vault.events_path)
    run_steps(a, 1)
    stale = hook_files.read_cursor(vault, "h")
    log("step_ended", index=0)
    log("step_ended", index=1)
    run_steps(a, 2)
    a.lock.release()
    hook_files.write_cursor(vault, "h", stale)  # what a lagging cache would show
    b, again = worker(vault, monkeypatch, spec, lambda _: None)
    run_steps(b, 2)
    assert len(delivered) == 2 and again == []  # nothing delivered twice
    assert hook_files.read_cursor(vault, "h")["seq"] > stale["seq"]


def test_only_pool_slot_1_keeps_a_hook_process(vault):
    from modulatio_d.daemon.hooks import HookKeeper

    hooked = config.Config(hooks=(HookSpec("h", ("*",), run="cat"),))
    for env, wanted in (({}, True), ({"MODULATIO_POOL_SLOT": "1"}, True),
                        ({"MODULATIO_POOL_SLOT": "2"}, False)):
        assert HookKeeper(vault, env).wanted is wanted
    idle = HookKeeper(vault, {"MODULATIO_POOL_SLOT": "3"})
    idle.keep(hooked)
    bare = HookKeeper(vault, {})
    bare.keep(config.Config())  # no hooks: nothing to start either
    assert idle.proc is None and bare.proc is None

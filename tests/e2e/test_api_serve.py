"""A real `modulatio serve` process with real daemons: work enqueued over HTTP runs to
completion, and the event stream delivers every event in order, resuming after a
disconnect from Last-Event-ID. Over a Unix socket (no port to race for)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import httpx
import pytest
from helpers import PY, clean_env, marks
from waiting import wait_for

from modulatio_d.store import events as events_mod


class Served:
    def __init__(self, root, socket_path, log_path):
        self.socket = socket_path
        with open(log_path, "ab") as err:
            self.proc = subprocess.Popen(
                [PY, "-m", "modulatio_d", "serve", "--vault", str(root), "--socket",
                 str(socket_path)], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                env=clean_env(), start_new_session=True)
        self.log_path = log_path
        self.token = None

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {log_path.read_text()}")
            try:
                return self.raw().get("/healthz").status_code == 200
            except httpx.TransportError:
                return False
        wait_for(up, 30, "serve answers /healthz")
        self.token = (root / ".modulatio" / "api-token").read_text().split()[-1]

    def raw(self, **kw) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)),
                            base_url="http://modulatio", **kw)

    def client(self, **kw) -> httpx.Client:
        return self.raw(headers={"Authorization": f"Bearer {self.token}"}, **kw)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def served(dvault, tmp_path):
    s = Served(dvault.root, tmp_path / "api.sock", tmp_path / "serve.log")
    try:
        yield s
    finally:
        s.stop()


def test_the_token_file_is_made_private(served, dvault):
    assert (dvault.root / ".modulatio" / "api-token").stat().st_mode & 0o777 == 0o600
    with served.raw() as anon:
        assert anon.get("/v1/status").status_code == 401


def test_fifty_plans_enqueued_over_http_all_complete_with_three_daemons(served, dvault,
                                                                         daemons):
    with served.client(timeout=30) as c:
        ids = []
        for n in range(50):
            r = c.post("/v1/plans", json={"project": "P", "title": f"job {n}", "approve": True,
                                          "steps": [{"run": dvault.step()}]},
                       headers={"Idempotency-Key": f"job-{n}"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        assert c.post("/v1/plans", json={"project": "P", "title": "job 0", "approve": True,
                                         "steps": [{"run": dvault.step()}]},
                      headers={"Idempotency-Key": "job-0"}).json()["id"] == ids[0]
        ds = [daemons() for _ in range(3)]

        def all_done():
            page = c.get("/v1/plans", params={"status": "completed", "limit": 100}).json()
            return page["total"] == 50
        wait_for(all_done, 120, "the 50 plans complete", diag=lambda: "\n".join(d.log() for d in ds))
    started = [m for m in marks(dvault.root / "marks") if m[0] == "start"]
    assert sorted(m[1] for m in started) == sorted(ids)  # each ran once


def _sse(lines):
    """(id, event) of each message of an SSE line iterator."""
    ident, data = None, ""
    for line in lines:
        if line.startswith("id: "):
            ident = line[4:]
        elif line.startswith("data: "):
            data += line[6:]
        elif line == "" and data:
            yield ident, json.loads(data)
            ident, data = None, ""


def test_the_event_stream_resumes_after_a_disconnect_from_last_event_id(served, dvault):
    with served.client(timeout=30) as c:
        for n in range(3):
            c.post("/v1/plans", json={"project": "P", "title": f"a{n}"})
        seen = []
        with c.stream("GET", "/v1/events", params={"from": "start"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for ident, event in _sse(r.iter_lines()):
                seen.append((ident, event))
                if len(seen) == 4:
                    break
        last = seen[-1][0]
        for n in range(3):  # written while no one listens
            c.post("/v1/plans", json={"project": "P", "title": f"b{n}"})
        with c.stream("GET", "/v1/events", headers={"Last-Event-ID": last}) as r:
            for ident, event in _sse(r.iter_lines()):
                seen.append((ident, event))
                if len(seen) == len(events_mod.read(dvault.vault.events_path)):
                    break
    on_disk = events_mod.read(dvault.vault.events_path)
    assert [e for _, e in seen] == on_disk  # every event, once, in order
    offsets = [int(i.split(":")[1]) for i, _ in seen]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def test_a_pause_over_http_stops_claims_on_every_daemon(served, dvault, daemons):
    from helpers import wait_ticks

    ds = [daemons() for _ in range(3)]
    with served.client(timeout=30) as c:
        assert c.post("/v1/pause", json={"reason": "maintenance"}).status_code == 200
        ids = [c.post("/v1/plans", json={"project": "P", "title": f"p{n}", "approve": True,
                                         "steps": [{"run": "true"}]}).json()["id"]
               for n in range(5)]
        for d in ds:
            wait_ticks(d, dvault, 3)  # each daemon looked, more than once, and claimed nothing
        listed = c.get("/v1/plans", params={"status": "approved"}).json()
        assert sorted(p["id"] for p in listed["items"]) == sorted(ids)
        assert c.get("/v1/status").json()["control"]["pause"]["vault"]["reason"] == \
            "maintenance"
        assert c.post("/v1/resume", json={}).status_code == 200
        wait_for(lambda: c.get("/v1/plans", params={"status": "completed"}).json()["total"]
                 == 5, 60, "the plans run after the resume")

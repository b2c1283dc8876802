"""The HTTP API in-process (Starlette's TestClient, httpx underneath), every endpoint:
auth, validation errors naming the field, idempotency, paging, and that a request
changes the vault's files as the command would. In-process, but over whole vaults:
kept out of the fast lane for its time. The real-process tests (a `serve` process with
daemons, the dashboard in a browser) are in test_api_serve.py and test_dashboard.py."""

from __future__ import annotations

import json
import threading

import pytest
from starlette.testclient import TestClient

from modulatio_d.ops.init import init
from modulatio_d.store import api_records
from modulatio_d.store import events as events_mod
from modulatio_d.store.plan_file import read_plan
from modulatio_d.web.app import ENDPOINTS, create_app
from modulatio_d.web.auth import MAX_BODY

SECRET = "s3cret-token-for-tests-0123456789"


@pytest.fixture
def vault(tmp_path):
    v = init(tmp_path / "vault")
    (v.meta / "api-token").write_text(f"# tokens\nci {SECRET}\n")
    return v


@pytest.fixture
def client(vault):
    app = create_app(vault, lambda: api_records.read_tokens(vault.meta / "api-token"))
    with TestClient(app, headers={"Authorization": f"Bearer {SECRET}"}) as c:
        yield c


def new(client, key=None, **body):
    body = {"project": "P", "title": "t", **body}
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/plans", json=body, headers=headers)


def test_every_endpoint_but_healthz_needs_the_token(vault):
    app = create_app(vault, lambda: api_records.read_tokens(vault.meta / "api-token"))
    with TestClient(app) as anon:
        assert anon.get("/healthz").json() == {"ok": True}
        for e in ENDPOINTS:
            if not e.auth:
                continue
            path = e.path.format(plan_id="P-P-001", action="approve", index=0, name="h",
                                 ticket_id="P-P-001-T-01", decision="approve")
            r = anon.request(e.method, path)
            assert r.status_code == 401, (e.path, r.status_code)
            assert "bearer token" in r.json()["error"]
            r = anon.request(e.method, path, headers={"Authorization": "Bearer " + "x" * 33})
            assert r.status_code == 401
        # A token that shares a prefix with the real one is no token.
        r = anon.get("/v1/status", headers={"Authorization": f"Bearer {SECRET[:-1]}"})
        assert r.status_code == 401


def test_enqueue_validates_each_field_by_name(client):
    for body, field in (({"title": "t"}, "project"), ({"project": "P"}, "title"),
                        ({"project": "P", "title": "t", "priority": "high"}, "priority"),
                        ({"project": "P", "title": "t", "approve": 1}, "approve"),
                        ({"project": "P", "title": "t", "steps": [3]}, "steps[0]"),
                        ({"project": "P", "title": "t", "colour": "red"}, "colour")):
        r = client.post("/v1/plans", json=body)
        assert r.status_code == 422, body
        assert r.json()["field"] == field and field in r.json()["error"]
    r = client.post("/v1/plans", content=b"{not json", headers={"content-type": "x"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    # What the plan reader refuses is refused before anything is written.
    r = new(client, budget={"tokens": -5})
    assert r.status_code == 422 and "budget" in r.json()["error"]
    r = new(client, project="no/such")
    assert r.status_code == 422
    assert client.get("/v1/plans").json()["total"] == 0


def test_enqueue_writes_the_plan_the_command_would(client, vault):
    r = new(client, steps=[{"run": "true"}, "think"], priority=70, approve=True)
    assert r.status_code == 201, r.text
    plan_id = r.json()["id"]
    _, path = vault.find("plans", plan_id)
    plan = read_plan(vault, path).plan
    assert plan.status.value == "approved" and plan.priority == 70 and plan.total == 2
    made = [e for e in events_mod.read(vault.events_path) if e.get("plan") == plan_id]
    assert {e["event"] for e in made} == {"plan_created", "api_request"}
    assert all(e["via"] == "api" and e["token"] == "ci" for e in made)


def test_the_same_idempotency_key_gives_the_same_plan_and_code(client, vault):
    first = new(client, key="k-1", approve=True)
    again = new(client, key="k-1", approve=True)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert client.get("/v1/plans").json()["total"] == 1
    other = new(client, key="k-1", title="something else")
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
    refused = new(client, key="k-2", budget={"tokens": -1})
    assert refused.status_code == 422
    assert new(client, key="k-2").status_code == 201  # a refused request made nothing


def test_one_key_from_many_clients_at_once_makes_one_plan(client, vault):
    answers = []

    def go():
        answers.append(new(client, key="race").json())
    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({a["id"] for a in answers}) == 1, answers
    assert client.get("/v1/plans").json()["total"] == 1


def test_plans_are_paged_and_filtered(client):
    ids = [new(client, approve=i % 2 == 0).json()["id"] for i in range(7)]
    page = client.get("/v1/plans", params={"limit": 3, "offset": 2}).json()
    assert page["total"] == 7 and [p["id"] for p in page["items"]] == ids[2:5]
    assert client.get("/v1/plans", params={"status": "approved"}).json()["total"] == 4
    for bad in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"limit": "x"}):
        assert client.get("/v1/plans", params=bad).status_code == 422


def test_plan_actions_and_show(client, vault):
    plan_id = new(client).json()["id"]
    assert client.post(f"/v1/plans/{plan_id}/approve").json()["status"] == "approved"
    r = client.post(f"/v1/plans/{plan_id}/resume")
    assert r.status_code == 409 and plan_id in r.json()["error"]
    assert client.post(f"/v1/plans/{plan_id}/explode").status_code == 404
    assert client.get("/v1/plans/P-P-999").status_code == 404
    shown = client.get(f"/v1/plans/{plan_id}").json()
    assert shown["status"] == "approved" and shown["usage"]["calls"] == 0
    changed = [e for e in events_mod.read(vault.events_path) if e["event"] == "status_changed"]
    assert changed[-1]["via"] == "api" and changed[-1]["action"] == "approve"


def test_tickets_are_listed_and_decided(client, vault):
    from datetime import UTC, datetime

    from modulatio_d.store import tickets

    plan_id = new(client, approve=True).json()["id"]
    _, path = vault.find("plans", plan_id)
    text = path.read_text().replace("status: approved", "status: paused")
    path.write_text(text)
    ticket = tickets.open_ticket(vault, "P", plan_id, tickets.Severity.WARNING, "why", "",
                                 {"current_index": 0, "rev": 0}, datetime.now(UTC))
    rows = client.get("/v1/tickets").json()
    assert rows["total"] == 1 and rows["items"][0]["id"] == ticket
    r = client.post(f"/v1/tickets/{ticket}/approve")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": ticket, "plan": plan_id, "decision": "approve"}
    assert client.post(f"/v1/tickets/{ticket}/maybe").status_code == 404


def test_status_and_metrics_are_the_commands_documents(client, run_cli, vault):
    new(client, approve=True)
    status = client.get("/v1/status").json()
    cli = json.loads(run_cli("status", "--json", "--vault", vault.root).out)
    assert status.keys() == cli.keys() and status["counts"] == cli["counts"]
    text = client.get("/metrics").text
    assert "modulatio_build_info" in text and 'status="approved"' in text


def test_a_body_over_the_limit_is_refused_unread(client):
    r = client.post("/v1/plans", content=b"x" * (MAX_BODY + 1),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413

    def chunks():
        for _ in range(MAX_BODY // 65536 + 2):
            yield b" " * 65536
    r = client.post("/v1/plans", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_the_openapi_document_is_the_route_table(client):
    doc = client.get("/openapi.json").json()
    served = {(e.method.lower(), e.path) for e in ENDPOINTS}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    app_routes = {(m.lower(), r.path) for r in client.app.app.routes for m in r.methods or ()
                  if m != "HEAD" and r.path.startswith(("/v1", "/metrics", "/healthz",
                                                        "/openapi"))}
    assert app_routes == served
    body = doc["paths"]["/v1/plans"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["required"]) == {"project", "title"}


def test_events_stream_from_the_start_as_json_lines(client, vault):
    new(client)
    new(client)
    with client.stream("GET", "/v1/events", params={"format": "jsonl", "from": "start",
                                                    "type": "plan_created"}) as r:
        lines = []
        for line in r.iter_lines():
            lines.append(json.loads(line))
            if len(lines) == 2:
                break
    assert [e["plan"] for e in lines] == ["P-P-001", "P-P-002"]


def test_a_bad_token_file_lets_no_one_in(vault):
    (vault.meta / "api-token").write_text("short\n")
    app = create_app(vault, lambda: api_records.read_tokens(vault.meta / "api-token"))
    with TestClient(app) as c:
        r = c.get("/v1/status", headers={"Authorization": "Bearer short"})
        assert r.status_code == 503 and "api-token:1" in r.json()["error"]


def test_workers_are_shown_and_set_per_host(client, vault):
    import socket

    shown = client.get("/v1/workers").json()
    assert shown["host"] == socket.gethostname() and shown["stored"] is None
    r = client.post("/v1/workers", json={"size": 3})
    assert r.status_code == 200, r.text
    assert client.get("/v1/workers").json()["stored"] == 3
    for body, field in (({"size": -1}, "size"), ({"size": 10_000}, "size"),
                        ({"size": True}, "size"), ({}, "size"),
                        ({"size": 2, "host": "../x"}, None)):
        r = client.post("/v1/workers", json=body)
        assert r.status_code == 422, (body, r.text)
        if field:
            assert r.json()["field"] == field
    assert client.get("/v1/workers").json()["stored"] == 3  # the good size stays
    resized = [e for e in events_mod.read(vault.events_path) if e["event"] == "pool_resized"]
    assert resized[-1]["size"] == 3 and resized[-1]["via"] == "api"


def test_pause_and_resume_the_vault_and_a_project(client, vault):
    from modulatio_d.store import pause

    new(client)  # makes project P
    r = client.post("/v1/pause", json={"reason": "upgrade"})
    assert r.status_code == 200, r.text
    state = pause.load(pause.path_of(vault.meta))
    assert state.vault.reason == "upgrade" and state.vault.by.startswith("api:ci@")
    assert client.get("/v1/status").json()["control"]["pause"]["vault"]["reason"] == "upgrade"
    assert client.post("/v1/resume", json={}).json() == {"resumed": "vault",
                                                         "was_paused": True}
    assert client.post("/v1/pause", json={"project": "p", "now": True}).status_code == 200
    assert "P" in pause.load(pause.path_of(vault.meta)).projects
    assert client.post("/v1/pause", json={"project": "NOPE"}).status_code == 404
    assert client.post("/v1/pause", json={"now": "yes"}).json()["field"] == "now"
    assert client.post("/v1/resume", json={"project": "P"}).json()["was_paused"] is True


def test_hooks_are_installed_listed_and_removed_keeping_the_persons_config(client, vault):
    config = vault.meta / "config.yaml"
    config.write_text("# the team's settings\ntimezone: UTC   # keep\n")
    hook = {"events": ["plan_*"], "run": "cat >> /dev/null"}
    r = client.post("/v1/hooks", json={"name": "notify", "hook": hook})
    assert r.status_code == 201, r.text
    text = config.read_text()
    assert text.startswith("# the team's settings\ntimezone: UTC   # keep\n") and "notify" in text
    assert [h["name"] for h in client.get("/v1/hooks").json()["items"]] == ["notify"]
    assert client.post("/v1/hooks", json={"name": "notify", "hook": hook}).status_code == 422
    bad = client.post("/v1/hooks", json={"name": "web", "hook": {"events": ["x"],
                                                                 "url": "ftp://nowhere"}})
    assert bad.status_code == 422 and "web" in bad.json()["error"]
    assert "web" not in config.read_text()  # refused before anything was written
    assert client.post("/v1/hooks", json={"name": "n", "hook": 3}).json()["field"] == "hook"
    assert client.delete("/v1/hooks/notify").status_code == 200
    assert client.delete("/v1/hooks/notify").status_code == 404
    assert config.read_text() == "# the team's settings\ntimezone: UTC   # keep\n"
    made = [e["event"] for e in events_mod.read(vault.events_path) if e.get("via") == "api"]
    assert "hook_installed" in made and "hook_removed" in made


def test_a_signed_webhook_delivery_makes_one_kickoff(vault, tmp_path):
    import hashlib
    import hmac

    folder = vault.root / "P" / "triggers"
    folder.mkdir(parents=True)
    (vault.root / "P" / "plans").mkdir(exist_ok=True)
    (folder / "P-T-001.md").write_text("---\nobjective: Deploy what was pushed\nwebhook: true\n"
                                       "secret_env: DEPLOY_SECRET\n---\n")
    (folder / "P-T-002.md").write_text("---\nobjective: Unsigned\nwebhook: true\n---\n")
    secret = b"a-secret-the-sender-knows"
    app = create_app(vault, lambda: api_records.read_tokens(vault.meta / "api-token"),
                     {"DEPLOY_SECRET": secret.decode()})
    body = b'{"ref": "main"}'

    def sign(data: bytes) -> str:
        return "sha256=" + hmac.new(secret, data, hashlib.sha256).hexdigest()
    with TestClient(app) as anon:  # no API token: the trigger's own signature decides
        headers = {"X-Modulatio-Signature-256": sign(body), "X-Modulatio-Delivery": "d-1"}
        first = anon.post("/v1/triggers/P-T-001", content=body, headers=headers)
        assert first.status_code == 201, first.text
        again = anon.post("/v1/triggers/P-T-001", content=body, headers=headers)
        assert again.status_code == 200 and again.json()["kickoff"] == first.json()["kickoff"]
        assert again.json()["made"] is False
        wrong = anon.post("/v1/triggers/P-T-001", content=body + b" ",
                          headers=headers)
        assert wrong.status_code == 401
        assert anon.post("/v1/triggers/P-T-002", content=body,
                         headers={"X-Modulatio-Signature-256": sign(body)}).status_code == 403
        assert anon.post("/v1/triggers/P-T-404", content=body, headers=headers).status_code \
            == 404
    kickoffs = list((vault.root / "P" / "plans").glob("P-T-001-W*.md"))
    assert len(kickoffs) == 1 and "main" in kickoffs[0].read_text()

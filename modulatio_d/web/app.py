"""The ASGI application of `modulatio serve`: the route table, errors, the dashboard."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modulatio_d.core.errors import ModulatioError
from modulatio_d.store.api_records import Token
from modulatio_d.store.vault import Vault
from modulatio_d.web import api, api_control, api_streams, openapi
from modulatio_d.web.auth import Guard

E = api.Endpoint
PAGE = (("offset", "integer", "the first item (default 0)"),
        ("limit", "integer", f"how many items (default 100, at most {api.MAX_PAGE})"))
ENDPOINTS: tuple[api.Endpoint, ...] = (
    E("GET", "/healthz", api.healthz, "alive (no token, no vault detail)", auth=False),
    E("GET", "/openapi.json", lambda r: _openapi(r), "this document"),
    E("GET", "/metrics", api.metrics, "the Prometheus text of `modulatio metrics`",
      produces="text/plain"),
    E("GET", "/v1/status", api.status, "the document of `modulatio status --json`"),
    E("GET", "/v1/plans", api.list_plans, "plans as rows, paged",
      query=(("project", "string", "only this project"),
             ("status", "string", "only plans in this status"), *PAGE)),
    E("POST", "/v1/plans", api.enqueue, "a new plan (Idempotency-Key: exactly once)",
      body=api.ENQUEUE),
    E("GET", "/v1/plans/{plan_id}", api.show_plan,
      "a plan with its reflection log and usage totals"),
    E("POST", "/v1/plans/{plan_id}/{action}", api.plan_action,
      "approve, pause, resume, abort or retry a plan"),
    E("GET", "/v1/plans/{plan_id}/logs/{index}", api_streams.step_log,
      "a step's output (index from 0, as current_index), followed while it runs",
      query=(("attempt", "integer", "which attempt (default: the latest)"),),
      produces="text/plain"),
    E("GET", "/v1/tickets", api.list_tickets, "open tickets, paged",
      query=(("all", "boolean", "closed tickets too"), *PAGE)),
    E("POST", "/v1/tickets/{ticket_id}/{decision}", api.decide_ticket,
      "approve or decline a ticket"),
    E("GET", "/v1/events", api_streams.events,
      "the event ledger as Server-Sent Events (from Last-Event-ID, or now)",
      query=(("format", "string", "sse (default) or jsonl"),
             ("from", "string", "start: from the first event of events.jsonl"),
             ("type", "string", "only events of this type (repeatable)"),
             ("plan", "string", "only events of this plan"),
             ("project", "string", "only events of this project")),
      produces="text/event-stream"),
    E("POST", "/v1/pause", api_control.pause,
      "pause the vault or a project (`modulatio pause`): running plans drain",
      body=api_control.PAUSE),
    E("POST", "/v1/resume", api_control.resume, "resume the vault or a project",
      body=api_control.RESUME),
    E("GET", "/v1/hooks", api_control.list_hooks,
      "the hooks with their cursors, retries and dead letters (`hooks list --json`)"),
    E("POST", "/v1/hooks", api_control.install_hook,
      "install a hook into the config, validated first, while daemons run",
      body=api_control.HOOK),
    E("DELETE", "/v1/hooks/{name}", api_control.remove_hook, "remove a hook from the config"),
    E("POST", "/v1/triggers/{trigger_id}", api_control.fire_trigger,
      "a webhook trigger's delivery (signed with the trigger's secret, no API token): "
      "one kickoff per delivery id", auth=False),
    E("GET", "/v1/workers", api_control.show_workers,
      "the pool size stored per host and the pools"),
    E("POST", "/v1/workers", api_control.set_workers, "set a host's pool size (`workers N`)",
      body=api_control.WORKERS),
)


def _openapi(request: Request) -> Response:
    return api.as_json(openapi.document(request.app.state.endpoints))


def _wrap(handler: Callable) -> Callable:
    async def endpoint(request: Request) -> Response:
        try:
            result = handler(request)
            return await result if hasattr(result, "__await__") else result
        except (api.HttpError, ModulatioError) as e:
            p = api.http_error_of(e)
            body = {"error": str(p)} | ({"field": p.field} if p.field else {})
            return Response(json.dumps(body), p.status, media_type="application/json")
    return endpoint


def _static(name: str, media: str) -> Callable:
    async def serve(request: Request) -> Response:
        data = resources.files("modulatio_d.web").joinpath("dashboard", name).read_bytes()
        return Response(data, media_type=media, headers={
            "cache-control": "no-cache",
            "content-security-policy": "default-src 'self'; img-src 'self' data:",
            "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"})
    return serve


def create_app(vault: Vault, tokens: Callable[[], list[Token]],
               environ: dict[str, str] | None = None, endpoints=ENDPOINTS) -> Guard:
    routes = [Route(e.path, _wrap(e.handler), methods=[e.method]) for e in endpoints]
    routes += [Route("/", _static("index.html", "text/html; charset=utf-8")),
               Route("/static/app.js", _static("app.js", "text/javascript; charset=utf-8")),
               Route("/static/app.css", _static("app.css", "text/css; charset=utf-8"))]
    app = Starlette(routes=routes)
    app.state.vault = vault
    app.state.environ = dict(environ or {})
    app.state.endpoints = endpoints
    return Guard(app, tokens)


def dashboard_files() -> list[Path]:
    return [Path(str(resources.files("modulatio_d.web").joinpath("dashboard", n)))
            for n in ("index.html", "app.js", "app.css")]

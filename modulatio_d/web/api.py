"""The routes of `modulatio serve`, as one table (ENDPOINTS) the app and the OpenAPI
document are both built from.

Each handler does what the matching command does, through the same use-case (ops/,
store/): a request changes files exactly as the CLI would. Blocking file work runs in
Starlette's thread pool. Answers are JSON; errors are `{"error": MESSAGE}` with 400 (a
body that is not JSON), 401 (no or a wrong token), 404 (no such plan or ticket), 409 (a
refused transition, a lock held, an idempotency key in use), 413 (a body too large) and
422 (a field that does not fit, named in `field`). Every change a request makes is
recorded in events.jsonl with `via: "api"` and the token's name, by the events it causes
and by an `api_request` line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from modulatio_d.core.errors import (
    BadFile,
    LockBusy,
    ModulatioError,
    NotFound,
    TransitionRefused,
    UsageError,
)
from modulatio_d.core.times import utcnow
from modulatio_d.store import api_records
from modulatio_d.store.events import EventLog
from modulatio_d.store.vault import Vault
from modulatio_d.web.auth import TooLarge
from modulatio_d.web.schema import Invalid, check

PLAN_ACTIONS = ("approve", "pause", "resume", "abort", "retry")
TICKET_DECISIONS = ("approve", "decline")
MAX_PAGE = 1000
PENDING_WAIT_S = 5.0

STEP = {"anyOf": [
    {"type": "string", "minLength": 1},
    {"type": "object"},
]}
ENQUEUE = {
    "type": "object", "additionalProperties": False, "required": ["project", "title"],
    "properties": {
        "project": {"type": "string", "minLength": 1,
                    "description": "the project code (its folder in the vault)"},
        "title": {"type": "string", "minLength": 1},
        "steps": {"type": "array", "items": STEP, "maxItems": 10_000,
                  "description": "sub-objectives as in a plan file: a text objective, "
                                 "or a mapping such as {\"run\": \"make test\"}"},
        "objective": {"type": "string", "minLength": 1,
                      "description": "one text objective (instead of steps)"},
        "priority": {"type": "integer", "minimum": -1_000_000, "maximum": 1_000_000},
        "budget": {"type": "object",
                   "description": "{tokens, cost_usd, wall_clock} as in a plan file"},
        "approve": {"type": "boolean", "description": "approved at once (default: draft)"},
        "not_before": {"type": "string", "description": "claimable from this time (ISO)"},
        "after": {"type": "array", "items": {"type": "string", "minLength": 1},
                  "description": "plan ids that must complete first"},
    }}


class HttpError(Exception):
    """An answer other than 2xx: its status, message and the field it is about (docs/api.md)."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.field = status, field


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Callable[..., Awaitable[Response]]
    summary: str
    body: dict | None = None
    query: tuple[tuple[str, str, str], ...] = ()
    """(name, type, description) of each query parameter."""
    auth: bool = True
    produces: str = "application/json"
    tags: tuple[str, ...] = field(default=("api",))


def as_json(value: object, status: int = 200) -> Response:
    return Response(json.dumps(value, default=str), status, media_type="application/json")


def vault_of(request: Request) -> Vault:
    return request.app.state.vault


def events_for(request: Request) -> Callable[..., None]:
    """The event log, every line marked as made through the API with the token's name."""
    log = EventLog(vault_of(request).events_path)
    token = request.scope.get("state", {}).get("token", "")

    def record(event: str, **fields: object) -> None:
        log(event, **fields, via="api", token=token)
    return record


async def body_of(request: Request, schema: dict) -> tuple[bytes, dict]:
    """(the raw body, its JSON checked against `schema`)."""
    try:
        raw = await request.body()
    except TooLarge:
        raise HttpError(413, "the body is too large") from None
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError) as e:
        raise HttpError(400, f"the body is not JSON: {e}") from None
    try:
        check(data, schema)
    except Invalid as e:
        raise HttpError(422, str(e), e.field) from None
    return raw, data


def page_of(request: Request) -> tuple[int, int]:
    try:
        offset = int(request.query_params.get("offset", 0))
        limit = int(request.query_params.get("limit", 100))
    except ValueError:
        raise HttpError(422, "offset and limit must be whole numbers", "offset") from None
    if offset < 0 or not 0 < limit <= MAX_PAGE:
        raise HttpError(422, f"offset must be >= 0 and limit 1..{MAX_PAGE}", "limit")
    return offset, limit


def http_error_of(error: Exception) -> HttpError:
    if isinstance(error, HttpError):
        return error
    if isinstance(error, NotFound):
        return HttpError(404, str(error))
    if isinstance(error, (TransitionRefused, LockBusy)):
        return HttpError(409, str(error))
    if isinstance(error, (UsageError, BadFile)):
        return HttpError(422, str(error))
    if isinstance(error, ModulatioError):
        return HttpError(409, str(error))
    raise error


# --- handlers ------------------------------------------------------------------------

async def healthz(request: Request) -> Response:
    return as_json({"ok": True})


class Shared:
    """An expensive document (the status of a 10,000-plan vault costs a tenth of a second
    of CPU) computed once for every request that asks meanwhile: 200 requests a second
    must not each pay it. It is computed again, one computation at a time, once
    events.jsonl changed (every change a daemon, a command or a request makes is an
    event there) or FRESH_S passed (a person's edit is no event). A request that finds
    it out of date waits up to WAIT_S for the new one, then gets the last one with
    `fresh` False (the dashboard asks again shortly: see app.js)."""

    FRESH_S = 1.0
    WAIT_S = 0.25

    def __init__(self, compute: Callable[[], bytes], changed: Callable[[], object]):
        self.compute, self.changed = compute, changed
        self.at = float("-inf")
        self.seen: object = None
        self.value: bytes | None = None
        self.running: object = None  # the asyncio task of the computation under way

    async def get(self) -> tuple[bytes, bool]:
        """(the document, whether it is up to date)."""
        import asyncio
        import time

        seen = self.changed()
        if seen == self.seen and time.monotonic() - self.at <= self.FRESH_S:
            return self.value, True
        if self.running is None:
            self.running = asyncio.ensure_future(self._refresh(seen))
        task = self.running
        if self.value is None:
            await asyncio.shield(task)
            return self.value, True
        done, _ = await asyncio.wait({task}, timeout=self.WAIT_S)
        return self.value, bool(done)

    async def _refresh(self, seen: object) -> None:
        import time

        try:
            at = time.monotonic()
            self.value = await run_in_threadpool(self.compute)
            self.at, self.seen = at, seen
        finally:
            self.running = None


async def status(request: Request) -> Response:
    state = request.app.state
    if getattr(state, "status_doc", None) is None:
        from modulatio_d.ops.survey import survey

        def compute() -> bytes:
            return json.dumps(survey(state.vault, utcnow(), state.environ).as_dict(),
                              default=str).encode()
        def changed() -> object:
            try:
                st = os.stat(state.vault.events_path)
                return st.st_ino, st.st_size
            except OSError:
                return None
        state.status_doc = Shared(compute, changed)
    body, fresh = await state.status_doc.get()
    return Response(body, media_type="application/json",
                    headers={"x-modulatio-fresh": "1" if fresh else "0"})


async def metrics(request: Request) -> Response:
    from modulatio_d.ops import metrics as m

    text = await run_in_threadpool(m.text, vault_of(request), utcnow(), request.app.state.environ)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


async def list_plans(request: Request) -> Response:
    from modulatio_d.ops.render import list_plans as rows_of

    offset, limit = page_of(request)
    q = request.query_params
    rows = await run_in_threadpool(rows_of, vault_of(request), q.get("project") or None,
                                   q.get("status") or None)
    return as_json({"items": rows[offset:offset + limit], "total": len(rows),
                    "offset": offset, "limit": limit})


async def show_plan(request: Request) -> Response:
    from modulatio_d.ops.render import show_plan as info_of

    return as_json(await run_in_threadpool(info_of, vault_of(request),
                                           request.path_params["plan_id"]))


async def plan_action(request: Request) -> Response:
    from modulatio_d.store.plan_file import change_status

    action = request.path_params["action"]
    if action not in PLAN_ACTIONS:
        raise HttpError(404, f"no action {action!r}: one of " + ", ".join(PLAN_ACTIONS))
    plan_id = request.path_params["plan_id"]
    events = events_for(request)
    plan = await run_in_threadpool(change_status, vault_of(request), plan_id, action,
                                   utcnow(), events)
    events("api_request", method="POST", path=request.url.path, plan=plan_id)
    return as_json({"id": plan.id, "status": plan.status.value, "done": plan.done,
                    "total": plan.total})


async def enqueue(request: Request) -> Response:
    """POST /v1/plans, exactly once per Idempotency-Key (store/api_records.py)."""
    raw, data = await body_of(request, ENQUEUE)
    key = request.headers.get("idempotency-key")
    if key is None:
        status, body = await run_in_threadpool(_enqueue, request, data)
        return as_json(body, status)
    if not 0 < len(key) <= 255:
        raise HttpError(422, "Idempotency-Key must be 1 to 255 characters", "Idempotency-Key")
    records = api_records.Idempotency(vault_of(request))
    request_digest = api_records.digest("POST", request.url.path, raw)
    found = await run_in_threadpool(records.claim, key, request_digest)
    if found is None:
        try:
            status, body = await run_in_threadpool(_enqueue, request, data)
        except BaseException:
            await run_in_threadpool(records.forget, key)  # nothing was made: free the key
            raise
        await run_in_threadpool(records.finish, key, request_digest, status, body)
        return as_json(body, status)
    found = await _settled(records, key, found)
    if found["digest"] != request_digest:
        raise HttpError(422, "this Idempotency-Key was used with another request",
                      "Idempotency-Key")
    return as_json(found["body"], found["status"])


async def _settled(records: api_records.Idempotency, key: str, found: dict) -> dict:
    import anyio

    waited = 0.0
    while found["state"] == "pending" and waited < PENDING_WAIT_S:
        await anyio.sleep(0.05)
        waited += 0.05
        found = await run_in_threadpool(records.read, key)
    if found["state"] == "pending":
        raise HttpError(409, f"a request with this Idempotency-Key is still being made (or its "
                           f"process died: then remove {records.path(key)})")
    return found


def _enqueue(request: Request, data: dict) -> tuple[int, dict]:
    from modulatio_d.ops.plans import new_plan

    vault = vault_of(request)
    extra: dict[str, object] = {k: data[k] for k in ("priority", "budget", "not_before",
                                                     "after") if k in data}
    if "steps" in data:
        extra["sub_objectives"] = data["steps"]
    elif "objective" in data:
        extra["sub_objectives"] = [data["objective"]]
    events = events_for(request)
    plan_id, path = new_plan(vault, data["project"], data["title"], [],
                             bool(data.get("approve")), utcnow(), extra=extra)
    status = "approved" if data.get("approve") else "draft"
    events("plan_created", project=data["project"], plan=plan_id, status=status)
    events("api_request", method="POST", path=request.url.path, plan=plan_id)
    return 201, {"id": plan_id, "project": data["project"], "status": status,
                 "path": str(path.relative_to(vault.root))}


async def list_tickets(request: Request) -> Response:
    from modulatio_d.ops.tickets import ticket_rows

    closed = request.query_params.get("all") in ("1", "true")
    offset, limit = page_of(request)
    rows = await run_in_threadpool(ticket_rows, vault_of(request), closed)
    return as_json({"items": rows[offset:offset + limit], "total": len(rows),
                    "offset": offset, "limit": limit})


async def decide_ticket(request: Request) -> Response:
    from modulatio_d.ops.tickets import decide
    from modulatio_d.store.tickets import TicketDecision

    decision = request.path_params["decision"]
    if decision not in TICKET_DECISIONS:
        raise HttpError(404, f"no decision {decision!r}: approve or decline")
    ticket_id = request.path_params["ticket_id"]
    events = events_for(request)
    ticket = await run_in_threadpool(decide, vault_of(request), ticket_id,
                                     TicketDecision(decision), utcnow(), events)
    events("api_request", method="POST", path=request.url.path, ticket=ticket_id)
    return as_json({"id": ticket.id, "plan": ticket.plan, "decision": decision})


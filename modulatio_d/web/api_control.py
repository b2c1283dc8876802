"""The control routes: the worker pool's size (and, with them, what steers the fleet)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from modulatio_d.core.times import utcnow
from modulatio_d.web.api import Problem, as_json, body_of, events_for, vault_of

WORKERS = {"type": "object", "additionalProperties": False, "required": ["size"],
           "properties": {"size": {"type": "integer", "minimum": 0,
                                   "description": "workers of the pool on that host"},
                          "host": {"type": "string", "minLength": 1,
                                   "description": "the host (default: the one serving)"}}}


async def show_workers(request: Request) -> Response:
    from modulatio_d.ops import pool

    return as_json(await run_in_threadpool(pool.show, vault_of(request), utcnow()))


async def set_workers(request: Request) -> Response:
    """The `workers N` command: the pool size stored for a host (its supervisor follows)."""
    from modulatio_d.ops import pool
    from modulatio_d.store.pool import check_size

    _, data = await body_of(request, WORKERS)
    try:
        n = check_size(data["size"], "size")
    except ValueError as e:
        raise Problem(422, str(e), "size") from None
    path = await run_in_threadpool(pool.set_size, vault_of(request), n, data.get("host"))
    events = events_for(request)
    events("pool_resized", size=n, host=data.get("host") or "", file=path)
    events("api_request", method="POST", path=request.url.path)
    return as_json({"size": n, "host": data.get("host"), "file": path})

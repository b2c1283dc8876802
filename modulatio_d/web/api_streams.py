"""The streamed routes: the event ledger (`GET /v1/events`) and a step's log."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from modulatio_d.ops import logs
from modulatio_d.web import stream
from modulatio_d.web.api import HttpError, vault_of


async def events(request: Request) -> Response:
    q = request.query_params
    sse = q.get("format", "sse") != "jsonl"
    if q.get("format", "sse") not in ("sse", "jsonl"):
        raise HttpError(422, "format is sse or jsonl", "format")
    inode, offset = stream.parse_id(request.headers.get("last-event-id") or q.get("after"))
    if offset is None and q.get("from") == "start":
        inode, offset = 0, 0
    types = set(q.getlist("type"))
    plan, project = q.get("plan"), q.get("project")

    def wanted(event: dict) -> bool:
        return (not types or event.get("event") in types) and \
            (plan is None or event.get("plan") == plan) and \
            (project is None or event.get("project") == project)

    state = request.app.state
    if getattr(state, "events_watch", None) is None:
        state.events_watch = stream.Watch(vault_of(request).events_path)
    body = stream.events(vault_of(request).events_path, inode, offset, sse, wanted,
                         state.events_watch)
    return StreamingResponse(body, media_type="text/event-stream" if sse
                             else "application/x-ndjson",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


async def step_log(request: Request) -> Response:
    """The output of one attempt of a step (the latest unless ?attempt=N), followed
    while the plan says that attempt runs (`in_flight`), then to its end."""
    from modulatio_d.store.plan_file import read_plan

    vault = vault_of(request)
    plan_id = request.path_params["plan_id"]
    try:
        index = int(request.path_params["index"])
        attempt = int(request.query_params["attempt"]) \
            if "attempt" in request.query_params else None
    except ValueError:
        raise HttpError(422, "the step index and attempt are whole numbers", "index") from None
    _, path = await anyio.to_thread.run_sync(vault.find, "plans", plan_id)
    found = await anyio.to_thread.run_sync(logs.attempts, logs.runs_dir(path), index, attempt)
    if not found:
        raise HttpError(404, f"step {index} of {plan_id} has no log" +
                      (f" for attempt {attempt}" if attempt is not None else " yet"))
    _, attempt, log_path = found[-1]  # the latest attempt unless one was named

    def running() -> bool:
        try:
            flight = read_plan(vault, path).plan.data.get("in_flight")
        except Exception:  # a plan being saved, a bad file: the log is read to its end
            return False
        return isinstance(flight, dict) and flight.get("index") == index \
            and flight.get("attempt") == attempt

    follower = stream.Follower(log_path, None, 0)
    if follower.fd is None:
        raise HttpError(404, f"no log {log_path.name} for {plan_id}")

    async def body():
        try:
            while True:
                go_on = await anyio.to_thread.run_sync(running)
                lines = await anyio.to_thread.run_sync(follower.read)
                for _, line in lines:
                    yield line + b"\n"
                if not go_on and not lines:
                    if follower.partial:
                        yield follower.partial
                    return
                if await request.is_disconnected():
                    return
                if not lines:
                    await anyio.sleep(stream.POLL_S)
        finally:
            follower.close()

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


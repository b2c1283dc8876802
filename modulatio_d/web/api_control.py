"""The control routes: the worker pool's size (and, with them, what steers the fleet)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from modulatio_d.core.times import utcnow
from modulatio_d.web.api import HttpError, as_json, body_of, events_for, vault_of

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
        raise HttpError(422, str(e), "size") from None
    path = await run_in_threadpool(pool.set_size, vault_of(request), n, data.get("host"))
    events = events_for(request)
    events("pool_resized", size=n, host=data.get("host") or "", file=path)
    events("api_request", method="POST", path=request.url.path)
    return as_json({"size": n, "host": data.get("host"), "file": path})


PAUSE = {"type": "object", "additionalProperties": False,
         "properties": {"project": {"type": "string", "minLength": 1,
                                    "description": "only this project (default: the vault)"},
                        "reason": {"type": "string", "description": "shown in status"},
                        "now": {"type": "boolean",
                                "description": "stop the running steps now (as SIGTERM)"}}}
RESUME = {"type": "object", "additionalProperties": False,
          "properties": {"project": {"type": "string", "minLength": 1}}}


async def pause(request: Request) -> Response:
    """`modulatio pause`: no new claim or cron kickoff; running plans drain."""
    from modulatio_d.ops.pausing import pause_scope

    _, data = await body_of(request, PAUSE)
    reason = data.get("reason", "")
    if "\0" in reason or len(reason) > 1000:
        raise HttpError(422, "reason must be a text of up to 1000 characters", "reason")
    vault = vault_of(request)
    project = await run_in_threadpool(_known_project, vault, data.get("project"))
    token = request.scope.get("state", {}).get("token", "")
    who = {"USER": f"api:{token}"}  # `by` in status: user@host, here the token's name
    state = await run_in_threadpool(pause_scope, vault, project, reason,
                                    bool(data.get("now")), utcnow(), who)
    events_for(request)("api_request", method="POST", path=request.url.path,
                        project=project or "")
    return as_json({"paused": project or "vault", "now": bool(data.get("now")),
                    "state": state.as_dict()})


async def resume(request: Request) -> Response:
    from modulatio_d.ops.pausing import resume_scope

    _, data = await body_of(request, RESUME)
    vault = vault_of(request)
    project = await run_in_threadpool(_known_project, vault, data.get("project"))
    _, was = await run_in_threadpool(resume_scope, vault, project)
    events_for(request)("api_request", method="POST", path=request.url.path,
                        project=project or "")
    return as_json({"resumed": project or "vault", "was_paused": was})


def _known_project(vault, project: str | None) -> str | None:
    """The project's folder name, matched as the CLI matches it (case aside)."""
    if project is None:
        return None
    for name in vault.projects():
        if name.lower() == project.lower():
            return name
    raise HttpError(404, f"no project {project!r} in the vault", "project")


HOOK = {"type": "object", "additionalProperties": False, "required": ["name", "hook"],
        "properties": {"name": {"type": "string", "minLength": 1},
                       "hook": {"type": "object",
                                "description": "the entry as under `hooks:` in the config "
                                               "(docs/hooks.md): events, filter, run or url"},
                       "replace": {"type": "boolean",
                                   "description": "replace a hook of that name"}}}


async def list_hooks(request: Request) -> Response:
    from modulatio_d.ops import hooks

    rows = await run_in_threadpool(hooks.rows, vault_of(request), request.app.state.environ)
    return as_json({"items": rows})


async def install_hook(request: Request) -> Response:
    """`POST /hooks/install` of the control planes: validated as the daemons would, then
    written into the config atomically; the daemons pick it up at their next tick."""
    from modulatio_d.ops import hook_install

    _, data = await body_of(request, HOOK)
    await run_in_threadpool(hook_install.install, vault_of(request), data["name"],
                            data["hook"], bool(data.get("replace")))
    events_for(request)("hook_installed", hook=data["name"])
    return as_json({"installed": data["name"]}, 201)


async def remove_hook(request: Request) -> Response:
    from modulatio_d.ops import hook_install

    name = request.path_params["name"]
    await run_in_threadpool(hook_install.remove, vault_of(request), name)
    events_for(request)("hook_removed", hook=name)
    return as_json({"removed": name})


SIGNATURE = "x-modulatio-signature-256"
DELIVERY = "x-modulatio-delivery"


async def fire_trigger(request: Request) -> Response:
    """A webhook delivery: authenticated by the trigger's own secret (HMAC-SHA256 of the
    body in X-Modulatio-Signature-256, as `sha256=<hex>`), not by the API's token; its
    delivery id (X-Modulatio-Delivery, else Idempotency-Key, else the body's sha256)
    makes it exactly one kickoff (ops/triggers.fire_webhook)."""
    import hashlib
    import hmac

    from modulatio_d.ops import triggers
    from modulatio_d.store import secrets
    from modulatio_d.web.auth import TooLarge

    vault = vault_of(request)
    trigger_id = request.path_params["trigger_id"]
    try:
        body = await request.body()
    except TooLarge:
        raise HttpError(413, "the body is too large") from None
    trigger = await run_in_threadpool(triggers.find, vault, trigger_id)
    if not trigger.webhook:
        raise HttpError(404, f"trigger {trigger_id} is a watch trigger, not a webhook")
    try:
        secret = secrets.read(f"trigger {trigger_id!r}", trigger.secret_env,
                              trigger.secret_file, vault.root, request.app.state.environ)
    except secrets.SecretUnusable as e:
        raise HttpError(503, str(e)) from None
    if secret is None:
        raise HttpError(403, f"trigger {trigger_id} has no secret: the HTTP endpoint takes only "
                           f"signed deliveries (set secret_file or secret_env in "
                           f"{trigger.path.name}, docs/triggers.md)")
    given = request.headers.get(SIGNATURE, "")
    wanted = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.encode(), wanted.encode()):
        raise HttpError(401, f"the {SIGNATURE} header is not the HMAC-SHA256 of the body with "
                           f"the trigger's secret")
    delivery = request.headers.get(DELIVERY) or request.headers.get("idempotency-key")
    events = events_for(request)
    kickoff, made = await run_in_threadpool(triggers.fire_webhook, vault, trigger_id, body,
                                            delivery, utcnow(), events)
    return as_json({"trigger": trigger_id, "kickoff": kickoff, "made": made},
                   201 if made else 200)

"""Bearer tokens and request limits, as one ASGI middleware in front of every route.

Every path but /healthz, / and /static/ needs `Authorization: Bearer <token>`, compared
in constant time with each token of the vault's token file (store/api_records.py); the
token's name is put in `scope["state"]["token"]` for the events a change records. A
body over MAX_BODY bytes is refused (413) before it is read whole, whether it says its
length or streams it. No cookies are read or set: a page holds the token in its tab's
session storage and sends it as a header, so no other site can make a request count
as the user's (no CSRF).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from modulatio_d.core.errors import BadFile
from modulatio_d.store.api_records import Token, same_secret

MAX_BODY = 1 << 20
OPEN_PATHS = ("/healthz", "/", "/favicon.ico")
OPEN_PREFIXES = ("/static/", "/v1/triggers/")  # a trigger checks its own signature


async def _answer(send, status: int, error: str, headers: list | None = None) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app, tokens: Callable[[], list[Token]]):
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
            headers = dict(scope["headers"])
            given = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, secret = given.partition(" ")
            try:
                known = self.tokens()
            except (BadFile, OSError) as e:  # the token file went bad: no one gets in
                return await _answer(send, 503, f"the token file cannot be read: {e}")
            token = same_secret(secret.strip(), known) if scheme.lower() == "bearer" else None
            if token is None:
                return await _answer(send, 401, "a bearer token is needed: Authorization: "
                                     "Bearer <the token in .modulatio/api-token>",
                                     [(b"www-authenticate", b"Bearer")])
            scope.setdefault("state", {})["token"] = token.name
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return await _answer(send, 413, f"the body is over {MAX_BODY} bytes")
        return await self.app(scope, _capped(receive), send)


def _capped(receive):
    seen = 0

    async def limited():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise TooLarge
        return message

    return limited


class TooLarge(Exception):
    """A streamed body went past MAX_BODY (api.py answers 413)."""

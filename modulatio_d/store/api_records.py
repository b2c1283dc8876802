"""What `modulatio serve` keeps in the vault: its bearer tokens and idempotency records.

Tokens: `.modulatio/api-token` (mode 0600, made by `serve` when missing) holds one token
per line, `NAME SECRET` or a bare `SECRET` (named `default`); blank lines and lines
starting with `#` are skipped. The name is what events.jsonl records for each change a
request makes; several lines let a token be rotated without a gap. A token of fewer
than 16 characters is refused with its line.

Idempotency: a request carrying `Idempotency-Key: K` is recorded in
`.modulatio/api/idempotency/<sha256(K)>.json`. Protocol, safe across API processes and
hosts sharing the vault:
1. `claim(K, digest)` creates the record with O_EXCL as `{"state": "pending", "digest"}`
   (digest: a hash of the method, path and body) and returns None: this process makes
   the change; or, the record existing, returns it: `pending` (another process is
   making it: the caller waits for `done` and answers 409 if it does not come) or
   `done` with the first answer, which is given again.
2. After the change, `finish(K, status, body)` replaces the record atomically with
   `{"state": "done", "digest", "status", "body"}`.
3. The same key with another digest is a client error (the caller answers 422).
A process that dies between 1 and 2 leaves a pending record: the key then answers 409
until a person removes the record (the message names the file), since whether the
change was made cannot be told from here.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from modulatio_d.core.errors import BadFile
from modulatio_d.store import atomic, fs
from modulatio_d.store.vault import Vault

TOKEN_FILE = "api-token"
MIN_TOKEN = 16


@dataclass(frozen=True)
class Token:
    name: str
    secret: str


def token_path(vault: Vault) -> Path:
    return vault.meta / TOKEN_FILE


def read_tokens(path: Path) -> list[Token]:
    """The tokens of a token file (see above); BadFile naming the line when one is bad."""
    text = fs.read(path, "api token").raw.decode("utf-8", "replace")
    tokens = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, secret = line.rpartition(" ")
        name = name.strip() or "default"
        if len(secret) < MIN_TOKEN:
            raise BadFile(path, f"the token is shorter than {MIN_TOKEN} characters", n,
                          "put a long random token there (`openssl rand -hex 32`)")
        tokens.append(Token(name, secret))
    if not tokens:
        raise BadFile(path, "holds no token", None, "delete it: `modulatio serve` makes one")
    return tokens


def ensure_token(vault: Vault) -> tuple[list[Token], bool]:
    """The vault's tokens, making the file (mode 0600) with one new token when missing;
    (tokens, True when it was made now)."""
    path = token_path(vault)
    try:
        return read_tokens(path), False
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(32)
    try:
        atomic.write_new(path, f"default {secret}\n".encode(), mode=0o600)
    except FileExistsError:  # another `serve` made it meanwhile: take that one
        return read_tokens(path), False
    return [Token("default", secret)], True


def digest(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class Idempotency:
    def __init__(self, vault: Vault):
        self.folder = vault.meta / "api" / "idempotency"

    def path(self, key: str) -> Path:
        return self.folder / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    def claim(self, key: str, request: str) -> dict | None:
        """None: this caller makes the change; else the record found (see above)."""
        path = self.path(key)
        fs.mkdirs(self.folder)
        try:
            atomic.write_new(path, json.dumps({"state": "pending", "digest": request}).encode())
            return None
        except FileExistsError:
            return self.read(key)

    def read(self, key: str) -> dict:
        path = self.path(key)
        try:
            found = json.loads(fs.read(path, "api record").raw)
        except (ValueError, RecursionError) as e:
            raise BadFile(path, f"not an idempotency record ({e})", None,
                          "remove it if no request with this key is being made") from e
        if not isinstance(found, dict) or found.get("state") not in ("pending", "done"):
            raise BadFile(path, "not an idempotency record", None,
                          "remove it if no request with this key is being made")
        return found

    def finish(self, key: str, request: str, status: int, body: object) -> None:
        atomic.replace(self.path(key), json.dumps(
            {"state": "done", "digest": request, "status": status, "body": body}).encode())

    def forget(self, key: str) -> None:
        """The change was refused (nothing was made): the key may be used again."""
        try:
            fs.unlink(self.path(key))
        except FileNotFoundError:
            pass


def same_secret(given: str, tokens: list[Token]) -> Token | None:
    """The token `given` is, compared in constant time with every token."""
    found = None
    for token in tokens:
        if secrets.compare_digest(given.encode(), token.secret.encode()):
            found = token
    return found





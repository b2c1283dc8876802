"""`modulatio serve`: the HTTP API and the dashboard (modulatio_d/web/, docs/api.md)."""

from __future__ import annotations

import argparse
import ipaddress

DEFAULT_LISTEN = "127.0.0.1:8765"


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[parent],
                       help="serve the HTTP API and the live dashboard of the vault")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN,
                       help=f"the address to listen on (default {DEFAULT_LISTEN}: this host "
                            "only; put TLS in front of any other, docs/api.md)")
    where.add_argument("--socket", metavar="PATH",
                       help="listen on this Unix socket instead").complete = "file"
    p.add_argument("--token-file", metavar="PATH",
                   help="the bearer tokens (default: .modulatio/api-token, made with mode "
                        "0600 when missing; a systemd credential named api-token is used "
                        "when $CREDENTIALS_DIRECTORY has one)").complete = "file"
    p.set_defaults(run=run_serve)


def split_listen(value: str) -> tuple[str, int]:
    from modulatio_d.core.errors import UsageError

    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {value!r} is not HOST:PORT (like {DEFAULT_LISTEN})")
    return host, int(port)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args, ctx) -> int:
    from pathlib import Path

    import uvicorn

    from modulatio_d.store import api_records
    from modulatio_d.web.app import create_app

    vault = ctx.vault(args)
    credentials = ctx.environ.get("CREDENTIALS_DIRECTORY")
    if args.token_file:
        path = ctx.cwd / Path(args.token_file).expanduser()
        api_records.read_tokens(path)  # refused now, with its line, rather than per request
        tokens = lambda: api_records.read_tokens(path)  # noqa: E731 (re-read: rotation)
    elif credentials and (Path(credentials) / "api-token").is_file():
        path = Path(credentials) / "api-token"
        api_records.read_tokens(path)
        tokens = lambda: api_records.read_tokens(path)  # noqa: E731
    else:
        path = api_records.token_path(vault)
        _, made = api_records.ensure_token(vault)
        if made:
            ctx.say(f"modulatio: made a bearer token in {path} (mode 0600): send it as "
                    "`Authorization: Bearer <token>`; the dashboard asks for it once")
        tokens = lambda: api_records.read_tokens(path)  # noqa: E731
    app = create_app(vault, _cached(tokens, path), ctx.environ)
    if args.socket:
        where = {"uds": str(ctx.cwd / args.socket)}
        shown = args.socket
    else:
        host, port = split_listen(args.listen)
        if not loopback(host):
            ctx.say(f"modulatio: warning: listening on {host}, beyond this host: put a "
                    "TLS-terminating reverse proxy in front (docs/api.md, \"Beyond this "
                    "host\"); the token travels in clear otherwise")
        where = {"host": host, "port": port}
        shown = f"http://{args.listen}/"
    ctx.say(f"modulatio: serving {vault.root} on {shown}")
    uvicorn.run(app, log_level="warning", access_log=False, **where)
    return 0


def _cached(read, path):
    """The tokens, read again only when the file changed (rotation without a restart)."""
    import os

    seen: dict = {}

    def tokens():
        try:
            st = os.stat(path)
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            sig = None
        if seen.get("sig") != sig or "tokens" not in seen:
            seen["tokens"], seen["sig"] = read(), sig
        return seen["tokens"]
    return tokens

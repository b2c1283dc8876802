"""One delivery of one event to one hook: a command, or a webhook POST.

A command (`run:`) gets the event's JSON on stdin, in its own process group
(killed whole at the hook's timeout) that dies with the deliverer
(PR_SET_PDEATHSIG: through `setpriv --pdeathsig KILL` when util-linux has it,
because the hook process has a thread per hook and preexec_fn is not safe
beside threads; else through preexec_fn, as daemon/child.py does), with
`MODULATIO_HOOK`, `MODULATIO_EVENT` and `MODULATIO_EVENT_ID` in its
environment; exit 0 is success.

A webhook (`url:`) is POSTed the same JSON with `Content-Type:
application/json`, the signature header (`X-Modulatio-Signature-256:
sha256=<HMAC-SHA256 of the body, hex>`), `X-Modulatio-Event` and
`Idempotency-Key: <event id>`; a 2xx answer is success, a redirect is not
followed (a failure, like any other answer). The timeout bounds each socket
operation (connect, send, each read). Standard library only (urllib.request):
one POST needs no more.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shlex
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from modulatio_d.core.hooks import EVENT_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, HookSpec
from modulatio_d.daemon.deadman import die_with_parent

ERROR_TAIL = 400
_SETPRIV = shutil.which("setpriv")


def signature(secret: bytes, body: bytes) -> str:
    """The value of the signature header: `sha256=` and HMAC-SHA256(secret, body) in hex."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def deliver(spec: HookSpec, event_id: str, kind: str, body: bytes, secret: bytes | None,
            environ: dict[str, str], cwd: Path) -> str | None:
    """Deliver once; None on success, else what went wrong (one line)."""
    if spec.run is not None:
        return _run(spec, event_id, kind, body, environ, cwd)
    return _post(spec, event_id, kind, body, secret or b"")


def _run(spec: HookSpec, event_id: str, kind: str, body: bytes, environ: dict[str, str],
         cwd: Path) -> str | None:
    argv = ["/bin/sh", "-c", spec.run] if isinstance(spec.run, str) else list(spec.run or ())
    env = {**environ, "MODULATIO_HOOK": spec.name, "MODULATIO_EVENT": kind,
           "MODULATIO_EVENT_ID": event_id}
    parent = os.getpid()
    prefix = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []
    try:
        proc = subprocess.Popen([*prefix, *argv], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd,
                                env=env, process_group=0,
                                preexec_fn=None if prefix else lambda: die_with_parent(parent))
    except OSError as e:
        return f"cannot start {shlex.join(argv)}: {e.strerror}"
    try:
        _, err = proc.communicate(body, timeout=spec.timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return f"timed out after {spec.timeout:g}s (killed)"
    except BaseException:
        _kill(proc)
        raise
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-ERROR_TAIL:].replace("\n", " | ")
        return f"exit {proc.returncode}" + (f": {tail}" if tail else "")
    return None


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=5)  # the pipes close once the group is gone
    except subprocess.TimeoutExpired:
        pass  # a grandchild that left the group keeps a pipe open: not waited for


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003 (urllib's signature)
        return None  # the 3xx comes back as an HTTPError: a failed delivery


_OPENER = urllib.request.build_opener(_NoRedirect())


def _post(spec: HookSpec, event_id: str, kind: str, body: bytes, secret: bytes) -> str | None:
    request = urllib.request.Request(spec.url or "", data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "modulatio-hooks",
        SIGNATURE_HEADER: signature(secret, body), EVENT_HEADER: kind,
        IDEMPOTENCY_HEADER: event_id})
    try:
        with _OPENER.open(request, timeout=spec.timeout) as answer:
            answer.read(65536)
            code = answer.status
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        return f"cannot reach {spec.url}: {e.reason}"
    except (OSError, ValueError) as e:  # a timeout mid-read, a reset, a malformed answer
        return f"{spec.url}: {type(e).__name__}: {e}"
    return None if 200 <= code < 300 else f"HTTP {code}"

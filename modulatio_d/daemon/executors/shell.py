"""`run:` steps: a string runs in `sh -c`, a list is the argv itself."""

from __future__ import annotations

from modulatio_d.daemon.child import Launch


def launch(ctx) -> Launch:
    run = ctx.step.run
    argv = ["/bin/sh", "-c", run] if isinstance(run, str) else list(run)
    return Launch(argv=argv, env=ctx.env(), cwd=ctx.cwd())

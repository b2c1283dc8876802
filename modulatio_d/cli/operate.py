"""`modulatio status|metrics|ps|stop|systemd-unit`: what operators run."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", parents=[parent],
                       help="daemons, plans by status with progress, open tickets, next cron "
                            "fires, refused files")
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    p.set_defaults(run=run_status)

    p = sub.add_parser("metrics", parents=[parent],
                       help="the vault's state in Prometheus text format")
    p.add_argument("--output", metavar="FILE",
                   help="write FILE atomically (for node_exporter's textfile collector: "
                        "name it *.prom) instead of printing").complete = "file"
    p.set_defaults(run=run_metrics)

    p = sub.add_parser("ps", parents=[parent],
                       help="the running daemons and pools of the vault: pid, uptime, active "
                            "plan, last tick, pool and slot")
    p.add_argument("--json", action="store_true",
                   help="one JSON object (daemons, pools, queue counts), for scripts")
    p.set_defaults(run=run_ps)

    p = sub.add_parser("stop", parents=[parent],
                       help="stop the daemon started with `daemon --detach`: SIGTERM, wait, "
                            "then SIGKILL")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait after SIGTERM before SIGKILL (default 30)")
    p.add_argument("--all", action="store_true",
                   help="also every other daemon of the vault on this host with a live "
                        "heartbeat (not for daemons run by systemd: use systemctl)")
    p.add_argument("--no-force", action="store_true",
                   help="never SIGKILL: after the timeout, say what still runs and exit 1")
    p.set_defaults(run=run_stop)

    p = sub.add_parser("systemd-unit", parents=[parent],
                       help="print a systemd unit running this install's modulatio on the vault")
    p.add_argument("--user", action="store_true",
                   help="for a user manager (systemctl --user): without what it refuses")
    p.add_argument("--instances", action="store_true",
                   help="the template modulatio-daemon@.service, for N daemons")
    p.add_argument("--workers", type=int, metavar="N",
                   help="one unit running a pool of N workers (`daemon --workers N`, "
                        "KillMode=mixed) instead of N template instances")
    p.set_defaults(run=run_systemd_unit)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def run_status(args, ctx) -> int:
    from modulatio_d.cli.progress import reporter
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops.status_text import render
    from modulatio_d.ops.survey import survey

    vault = ctx.vault(args)
    tick, done = reporter(ctx.err, "status")
    try:
        s = survey(vault, utcnow(), ctx.environ, tick=tick)
    finally:
        done()
    if args.json:
        ctx.print(json.dumps(s.as_dict(), indent=2, default=str))
    else:
        ctx.print(render(s, tty=_isatty(ctx.out)))
    return 0


def run_metrics(args, ctx) -> int:
    from modulatio_d.cli.progress import reporter
    from modulatio_d.core.errors import ModulatioError
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops import metrics

    vault = ctx.vault(args)
    now = utcnow()
    tick, done = reporter(ctx.err, "metrics")
    try:
        try:
            text = metrics.text(vault, now, ctx.environ, tick)
        finally:
            done()
        _write_metrics(args, ctx, text)
    except Exception as e:
        # Still write a file: a collector must not go on serving the last one as fresh.
        _write_metrics(args, ctx, metrics.failed(now, e))
        if not isinstance(e, (ModulatioError, OSError, ValueError)):
            raise  # a bug: keep its traceback
        print(f"modulatio: metrics: could not read {vault.root}: {e}", file=ctx.err)
        return 1
    return 0


def _write_metrics(args, ctx, data: str) -> None:
    raw = data.encode("utf-8", "backslashreplace")  # never a UnicodeEncodeError
    if args.output:
        from pathlib import Path

        from modulatio_d.store import atomic

        path = Path(args.output)
        if not path.is_absolute():
            path = ctx.cwd / path
        atomic.replace(path, raw)
        return
    buffer = getattr(ctx.out, "buffer", None)
    if buffer is None:  # a text stream with no bytes beneath (a StringIO)
        ctx.out.write(raw.decode("utf-8"))
        return
    ctx.out.flush()
    buffer.write(raw)
    buffer.flush()


def run_ps(args, ctx) -> int:
    from modulatio_d.core.times import utcnow
    from modulatio_d.ops import pool
    from modulatio_d.ops.status_text import duration

    vault = ctx.vault(args)
    seen = pool.ps(vault, utcnow())
    rows, pools = seen["daemons"], seen["pools"]
    if args.json:
        ctx.print(json.dumps(seen, indent=2))
        return 0
    if not rows and not pools:
        ctx.print("no daemon runs on this vault")
        return 0
    for p in pools:
        ctx.say(f"pool {p['pid']} on {p['host']}: {p['size']} worker(s) wanted "
                f"({p['source']}), {p['running']} running"
                + (f", {p['draining']} finishing their step" if p["draining"] else "")
                + (", detached" if p.get("detached") else "")
                + f", up {duration(p['uptime_s'])}")
    if not rows:
        return 0
    ctx.print(f"{'PID':<8} {'HOST':<16} {'UPTIME':<8} {'LAST TICK':<10} {'MODE':<9} "
              f"{'ACTIVE PLAN':<24} STEP")
    for r in rows:
        last = "starting" if r.get("starting") else f"{duration(r['age_s'])} ago"
        mode = "detached" if r["detached"] else ""
        if r.get("pool"):
            mode = f"w{r['slot']}/{r['pool']}" + ("-" if r["worker_state"] != "running" else "")
        ctx.say(f"{r['pid']:<8} {r['host']:<16} {duration(r['uptime_s']):<8} "
                  f"{last:<10} {mode:<9} "
                  f"{r['active_plan'] or '-':<24} {'-' if r['step'] is None else r['step'] + 1}")
    return 0


def run_stop(args, ctx) -> int:
    import socket

    from modulatio_d.core.controls import neutralise
    from modulatio_d.ops import detach, stopping

    if args.timeout < 0:
        from modulatio_d.core.errors import UsageError
        raise UsageError("--timeout must be 0 or more")
    vault = ctx.vault(args)
    targets, left = stopping.stop(vault, args.timeout, all_here=args.all,
                                  force=not args.no_force)
    if not targets:
        ctx.print("no detached daemon runs on this vault" if not args.all else
                  "no daemon of this vault runs on this host")
    for t in targets:
        what = {"detached": "detached daemon", "pool": "pool"}.get(t.how, "daemon")
        ctx.print({"stopped": f"{what} {t.pid} stopped",
                   "gone": f"{what} {t.pid} was already gone",
                   "killed": f"{what} {t.pid} did not stop within {args.timeout:g}s: killed "
                             f"(SIGKILL); its plan stays executing and the next daemon "
                             f"resumes it",
                   "running": f"{what} {t.pid} is still running after SIGKILL",
                   "waiting": f"{what} {t.pid} did not stop within {args.timeout:g}s and "
                              f"still runs (--no-force: not killed); it stops after its "
                              f"step, or run stop again without --no-force",
                   "denied": f"{what} {t.pid} runs as another user: not permitted to signal "
                             f"it; run stop as the daemon's user (or root)"}[t.result])
    here = socket.gethostname()
    for b in left:
        if b.get("refused") and b.get("detached"):
            note = (f"{detach.pid_path(vault)} is locked but names pid {b['pid']}, which is "
                    f"{b['refused']}: not signalled")
        elif b.get("refused"):
            note = f"daemon {b['pid']} left alone: it is {b['refused']}"
        elif b.get("host") != here:
            note = f"daemon {b['pid']} on {b.get('host')} still runs on this vault"
        else:
            note = (f"daemon {b['pid']} still runs on this vault (not started with --detach): "
                    f"`modulatio stop --all` stops it; use systemctl if systemd runs it")
        print(f"modulatio: note: {neutralise(note)}", file=ctx.err)
    stuck = any(t.result in ("running", "denied", "waiting") for t in targets) or \
        any(b.get("refused") and b.get("detached") for b in left)
    return 1 if stuck else 0


def run_systemd_unit(args, ctx) -> int:
    import os
    import sys
    from pathlib import Path

    from modulatio_d.ops.units import render_unit, unit_text

    chosen = args.vault or ctx.environ.get("MODULATIO_VAULT")
    if chosen:  # the unit may be written before the vault is made: a note, not a refusal
        vault = os.path.abspath(os.path.join(ctx.cwd, os.path.expanduser(chosen)))
        if not Path(vault, ".modulatio").is_dir():
            print(f"modulatio: note: {vault} is not a vault yet; create it with "
                  f"`modulatio init {vault}` before starting the unit", file=ctx.err)
    else:
        vault = str(ctx.vault(args).root)
    python = os.path.abspath(sys.executable)
    text = render_unit(unit_text(args.instances), python_exe=python, vault=vault,
                       user=args.user)
    if args.workers is not None:
        from modulatio_d.core.errors import UsageError
        from modulatio_d.ops.units import pool_unit
        from modulatio_d.store.pool import check_size

        if args.instances:
            raise UsageError("--instances and --workers are the two ways to run N "
                             "daemons: choose one")
        try:
            text = pool_unit(text, check_size(args.workers, "--workers"))
        except ValueError as e:
            raise UsageError(str(e)) from None
    real = os.path.realpath(vault)
    tmp = next((t for t in ("/tmp", "/var/tmp") if real == t or real.startswith(t + "/")), None)
    if tmp and "PrivateTmp=yes" in text.splitlines():
        print(f"modulatio: warning: the vault {vault} is under {tmp}, and the unit's "
              f"PrivateTmp=yes gives the daemon a {tmp} of its own, where this vault is not: "
              f"move the vault (for instance to /srv/modulatio/vault) or drop PrivateTmp=yes",
              file=ctx.err)
    ctx.out.write(text)
    return 0

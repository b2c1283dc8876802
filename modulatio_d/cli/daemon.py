"""`modulatio daemon` and `modulatio heartbeat`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys


def setup_logging(level: str, fmt: str, stream=None, environ: dict[str, str] | None = None,
                  ) -> None:
    """Log to `stream` (stderr) as text or JSON; with syslog priority prefixes and no
    timestamp of the text's own when the stream is systemd's journal (daemon/logfmt.py)."""
    from modulatio_d.daemon import logfmt

    stream = stream or sys.stderr
    journal = logfmt.is_journal(stream, os.environ if environ is None else environ)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logfmt.JsonFormatter(journal) if fmt == "json"
                         else logfmt.TextFormatter(journal))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("daemon", parents=[parent], help="run approved plans (the daemon)")
    p.add_argument("--tick-seconds", type=float, default=30.0, metavar="N",
                   help="seconds between scans when nothing wakes it (default 30)")
    p.add_argument("--project", action="append", default=[], metavar="CODE",
                   help="serve only this project (repeatable; default: all); the folder "
                        "must exist").complete = "project"
    p.add_argument("--once", action="store_true",
                   help="run until nothing is claimable, then exit 0")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], metavar="L",
                   help="debug, info (default), warning or error")
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="text (default) or json: one object a line with the event fields")
    p.add_argument("--allow-root", action="store_true",
                   help="run even as root (containers, CI, where root is the only user); "
                        "also MODULATIO_ALLOW_ROOT=1. Every step then runs as root")
    p.add_argument("--detach", action="store_true",
                   help="run in the background without systemd: pid file "
                        ".modulatio/daemon.pid (and daemon.json), log .modulatio/daemon.log "
                        "or --log-file; reports the pid of one already running (stop it "
                        "with `modulatio stop`)")
    p.add_argument("--log-file", metavar="PATH",
                   help="with --detach: append the log to PATH instead of "
                        ".modulatio/daemon.log").complete = "file"
    p.add_argument("--workers", type=int, metavar="N",
                   help="run a pool: a supervisor of N worker daemons (0 to 64), restarted "
                        "when they die, resized by `modulatio workers N` (a size stored for "
                        "this host wins over N); with --once, each worker runs until nothing "
                        "is claimable and the pool exits when all have")
    p.set_defaults(run=run_daemon)

    p = sub.add_parser("heartbeat", parents=[parent],
                       help="print the freshest live daemon's last tick (a monitoring probe: "
                            "exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)")
    p.usage_exit = 3  # a probe given bad arguments is UNKNOWN to its monitor, not CRITICAL
    p.add_argument("--max-age", type=float, metavar="S",
                   help="WARNING (exit 1) when no live daemon ticked within S seconds")
    p.add_argument("--critical-age", type=float, metavar="S",
                   help="CRITICAL (exit 2) when no live daemon ticked within S seconds "
                        "(no live daemon at all is always CRITICAL)")
    p.add_argument("--all", action="store_true", help="list every daemon's heartbeat")
    p.add_argument("--json", action="store_true",
                   help="accepted for symmetry: the output is JSON anyway")
    p.set_defaults(run=run_heartbeat, monitoring=True)


def _stop_before_start(signum, frame) -> None:
    # A stop asked for while the daemon is still importing: nothing is claimed yet.
    raise SystemExit(0)


def _hangup_before_start(signum, frame) -> None:
    pass  # the config is read at the first tick anyway (a handler, not SIG_IGN: not inherited)


def run_daemon(args, ctx) -> int:
    if not args.detach:  # Daemon.run installs its own
        signal.signal(signal.SIGTERM, _stop_before_start)
        signal.signal(signal.SIGINT, _stop_before_start)
        signal.signal(signal.SIGUSR2, _stop_before_start)  # a drain before any claim
        signal.signal(signal.SIGHUP, _hangup_before_start)
    from modulatio_d.core.errors import ModulatioError
    from modulatio_d.core.times import utcnow
    from modulatio_d.daemon.loop import Daemon

    _check_options(args)
    from modulatio_d.cli.lookup import projects as project_codes

    vault = ctx.vault(args)
    projects = project_codes(vault, args.project, ctx)
    from modulatio_d.store import trust

    # After the arguments (a typo is a usage error first), before anything starts.
    if os.geteuid() == 0 and not trust.root_allowed(args.allow_root, ctx.environ):
        raise ModulatioError(trust.ROOT_REFUSED)
    args.log_level = args.log_level or "info"
    if args.detach:
        return _detach(args, ctx, vault, projects)
    setup_logging(args.log_level, args.log_format, ctx.err, ctx.environ)
    if args.workers is not None:
        from modulatio_d.daemon.pool import Settings, Supervisor

        once = ["--once"] if args.once else []
        return Supervisor(Settings(vault, _worker_args(args, projects) + once, args.workers,
                                   ctx.environ, run_here, once=args.once)).run()
    try:
        return Daemon(vault, projects, args.tick_seconds, args.once, utcnow, ctx.environ).run()
    except OSError:  # main's one line says what; the log keeps where, for a daemon's death
        import logging

        logging.getLogger("modulatio.daemon").exception("the daemon stops on a system error")
        raise


def run_here(argv: list[str], environ: dict[str, str], cwd) -> int:
    """`modulatio ARGV` run in this process (a pool's forked worker, daemon/worker_fork.py)."""
    from modulatio_d.cli.main import Context, main

    return main(argv, Context(environ=environ, cwd=cwd))


def _check_options(args) -> None:
    from modulatio_d.core.errors import UsageError

    if args.tick_seconds <= 0:
        raise UsageError("--tick-seconds must be more than 0")
    if args.log_file and not args.detach:
        raise UsageError("--log-file goes with --detach (without it the log is stderr: "
                         "redirect it)")
    if args.workers is not None:
        from modulatio_d.store.pool import check_size

        try:
            check_size(args.workers, "--workers")
        except ValueError as e:
            raise UsageError(str(e)) from None


def _worker_args(args, projects) -> list[str]:
    argv = ["--tick-seconds", repr(args.tick_seconds), "--log-level", args.log_level,
            "--log-format", args.log_format]
    for p in projects:
        argv += ["--project", p]
    if args.allow_root:
        argv.append("--allow-root")
    return argv


def _detach(args, ctx, vault, projects) -> int:
    from modulatio_d.ops import detach

    argv = _worker_args(args, projects)
    if args.once:
        argv.append("--once")
    if args.workers is not None:
        argv += ["--workers", str(args.workers)]
    log = detach.log_path(vault, args.log_file and (ctx.cwd / args.log_file))
    started = detach.start(vault, argv, ctx.environ, log_file=log)
    if started.already:
        ctx.print(f"a detached daemon already runs on this vault: pid {started.pid} "
                  f"(log {log})")
        return 0
    if started.exit_code == 0:
        ctx.print(f"the detached daemon (pid {started.pid}) already finished (log {log})")
        return 0
    if started.exit_code is not None:
        print(f"modulatio: the detached daemon (pid {started.pid}) exited with "
              f"{started.exit_code} while starting; from {log}:\n{started.log_tail}",
              file=ctx.err, end="")
        return 1
    ctx.print(f"daemon started in the background: pid {started.pid} (log {log})"
              + ("" if started.ready else "; its first scan is not done yet"))
    return 0


def run_heartbeat(args, ctx) -> int:
    """Exit codes as monitoring plugins (Nagios, Icinga, Sensu) read them: 0 OK, 1 WARNING
    (older than --max-age), 2 CRITICAL (no live daemon, or older than --critical-age),
    3 UNKNOWN (the probe could not look: main maps every error of this command to 3)."""
    from modulatio_d.store.heartbeat import freshest, read_all

    vault = ctx.vault(args)
    if args.all:
        beats = read_all(vault.daemons_dir)
        ctx.print(json.dumps(beats, indent=2))
        fresh = [b for b in beats if b["live"]]
    else:
        best = freshest(vault.daemons_dir)
        ctx.print(json.dumps({"last_tick": best["last_tick"] if best else None,
                              "active_plan": best["active_plan"] if best else None,
                              "age_s": best["age_s"] if best else None,
                              "daemon": f"{best['host']}.{best['pid']}" if best else None}))
        fresh = [best] if best else []
    if not fresh:
        print("modulatio: CRITICAL: no live daemon on this vault", file=ctx.err)
        return 2
    age = min(b["age_s"] for b in fresh)
    for limit, code, level in ((args.critical_age, 2, "CRITICAL"), (args.max_age, 1, "WARNING")):
        if limit is not None and age > limit:
            print(f"modulatio: {level}: no live daemon ticked within {limit:g}s (the freshest "
                  f"{age:.0f}s ago)", file=ctx.err)
            return code
    return 0

"""`modulatio doctor`: printing the checks of modulatio_d/ops/doctor/."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("doctor", parents=[parent],
                       help="check that the vault's filesystem is safe for the daemons "
                            "(exit 0 safe, 1 caveats, 2 unsafe)")
    p.add_argument("--json", action="store_true",
                   help="one JSON document: the verdict and every check, for scripts")
    p.add_argument("--peer", action="store_true",
                   help="also check locks and visibility with a doctor run on another host "
                        "at the same time")
    p.add_argument("--peer-wait", type=float, default=30.0, metavar="SECONDS",
                   help="how long --peer waits for the other host's run (default 30)")
    p.set_defaults(run=run_doctor)


_SAYS = {0: "safe", 1: "works, with the caveats above", 2: "UNSAFE: do not run daemons here"}


def run_doctor(args: argparse.Namespace, ctx) -> int:
    from modulatio_d.core.errors import UsageError
    from modulatio_d.ops import doctor

    if args.peer_wait <= 0 or args.peer_wait > 3600:
        raise UsageError("--peer-wait takes 0 to 3600 seconds")
    vault = ctx.vault(args)
    report = doctor.run(vault, peer=args.peer, peer_wait=args.peer_wait)
    if args.json:
        ctx.print(json.dumps(report.as_json(), indent=2))
        return report.exit_code
    ctx.print(f"modulatio doctor: {report.vault} on host {report.host}")
    width = max(len(r.check) for r in report.rows)
    for r in report.rows:
        ctx.print(f"  {r.verdict.word:<7} {r.check:<{width}}  {r.detail}")
        if r.hint:
            ctx.print(f"  {'':<7} {'':<{width}}  -> {r.hint}")
    ctx.print(f"verdict: {_SAYS[report.exit_code]} (exit {report.exit_code})")
    return report.exit_code

"""The built-in offline `mock` agent (run as `python -m`), for demos and tests.

It prints a short made-up result for $MODULATIO_OBJECTIVE and appends one
usage line with made-up but deterministic token counts. Options (from the
agent's config entry): `sleep` seconds to take, `fail: true` to exit 1,
`model` to report.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

from modulatio_d.core.times import format_time, utcnow


def main() -> int:
    objective = os.environ.get("MODULATIO_OBJECTIVE", "")
    options = json.loads(os.environ.get("MODULATIO_AGENT_OPTIONS") or "{}")
    started = time.monotonic()
    if options.get("sleep"):
        time.sleep(float(options["sleep"]))
    seed = int(hashlib.sha256(objective.encode()).hexdigest()[:6], 16)
    line = {
        "timestamp": format_time(utcnow()),
        "model": options.get("model", "mock-1"),
        "input_tokens": 200 + len(objective) * 4,
        "output_tokens": 100 + seed % 400,
        "cost_usd": round((300 + len(objective) * 4 + seed % 400) * 2e-6, 6),
        "call_id": f"mock-{os.environ.get('MODULATIO_PLAN_ID')}-"
                   f"{os.environ.get('MODULATIO_STEP_INDEX')}-{os.environ.get('MODULATIO_ATTEMPT')}",
        "agent_id": os.environ.get("MODULATIO_AGENT", "mock"),
        "duration_s": round(time.monotonic() - started, 3),
    }
    with open(os.environ["MODULATIO_USAGE_FILE"], "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    if options.get("fail"):
        print(f"mock agent: failing on purpose: {objective}", flush=True)
        return 1
    print(f"mock agent: done: {objective}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

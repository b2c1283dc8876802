"""`modulatio serve` under load, beside the CLI computing the same document.

On a vault of BENCH_PLANS (10,000) plans: BENCH_SSE (100) clients hold the event stream
open while GET /v1/status is requested at BENCH_RATE (200) a second, open loop (each
request sent at its time, whether the last one answered or not), for BENCH_SECONDS
(20). Prints the error count and the latency percentiles, beside the wall time of
`modulatio status --json` on the same vault (the CLI pays the whole survey each run;
the server computes it once per change of events.jsonl or second, docs/api.md).
Loopback only.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vaultgen import make_vault  # noqa: E402

PLANS = int(os.environ.get("BENCH_PLANS", "10000"))
SSE = int(os.environ.get("BENCH_SSE", "100"))
RATE = int(os.environ.get("BENCH_RATE", "200"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_status(root: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "modulatio_d", "status", "--json", "--vault",
                    str(root)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


async def load(base: str, token: str) -> tuple[list[float], int, int]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=SSE + 400, max_keepalive_connections=SSE + 400)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=60) as client:
        stop = asyncio.Event()
        opened = 0

        async def listen():
            nonlocal opened
            async with client.stream("GET", "/v1/events") as r:
                r.raise_for_status()
                opened += 1
                async for _ in r.aiter_lines():
                    if stop.is_set():
                        return

        listeners = [asyncio.create_task(listen()) for _ in range(SSE)]
        while opened < SSE:
            await asyncio.sleep(0.05)
        latencies: list[float] = []
        errors = 0

        async def one():
            nonlocal errors
            t = time.perf_counter()
            try:
                r = await client.get("/v1/status")
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        tasks = []
        for i in range(int(RATE * SECONDS)):
            delay = start + i / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        stop.set()
        for t in listeners:
            t.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        return latencies, errors, opened


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_vault(Path(tmp) / "vault", PLANS)
        cli = sorted(cli_status(root) for _ in range(3))[1]
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "modulatio_d", "serve", "--vault",
                                 str(root), "--listen", f"127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(base + "/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            token = (root / ".modulatio" / "api-token").read_text().split()[-1]
            latencies, errors, opened = asyncio.run(load(base, token))
        finally:
            proc.terminate()
            proc.wait()
    q = statistics.quantiles(latencies, n=100, method="inclusive")  # never past the max
    print(f"serve, {PLANS} plans, {opened} SSE clients, GET /v1/status at {RATE}/s for "
          f"{SECONDS:g}s: {len(latencies)} requests, {errors} errors")
    print(f"  latency p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms")
    print(f"  peer: `modulatio status --json` (CLI, whole survey) {cli * 1000:.0f} ms")


if __name__ == "__main__":
    main()

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
from bytecode import compile_package  # noqa: E402
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


async def request(port: int, path: str, token: str) -> tuple[int, asyncio.StreamReader,
                                                              asyncio.StreamWriter]:
    """One HTTP/1.1 GET on a new loopback connection: (status, reader at the body, writer).

    Raw asyncio streams, not httpx: httpx's connection pool does work per queued request
    that grows with the requests in flight, and at 200 a second beside 100 open streams
    the client, not the server, took the whole core (the server sat at 2%)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}"
                 f"\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # the headers
    return status, reader, writer


async def load(port: int, token: str) -> tuple[list[float], int, int]:
    stop = asyncio.Event()
    opened = 0

    async def listen():
        nonlocal opened
        status, reader, writer = await request(port, "/v1/events", token)
        assert status == 200, status
        opened += 1
        try:
            while not stop.is_set() and await reader.readline():
                pass
        finally:
            writer.close()

    listeners = [asyncio.create_task(listen()) for _ in range(SSE)]
    while opened < SSE:
        await asyncio.sleep(0.05)
    latencies: list[float] = []
    errors = 0

    async def one():
        nonlocal errors
        t = time.perf_counter()
        try:
            status, reader, writer = await request(port, "/v1/status", token)
            body = await reader.read()  # to the end: Connection: close
            writer.close()
            if status != 200 or not body.startswith(b"{"):
                errors += 1
        except OSError:
            errors += 1
        latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    tasks = []
    for i in range(int(RATE * SECONDS)):  # open loop: each request at its time
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
            latencies, errors, opened = asyncio.run(load(port, token))
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
    compile_package()  # time the bytecode a user imports (bench/bytecode.py)
    main()

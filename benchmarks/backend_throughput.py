"""Throughput of the OpenAI-compatible backend against the loopback server in latency-only mode.

The server (its own process, so client and server do not share a GIL) answers every chat request
after 50 ms. At concurrency C the ideal rate is C / 0.05 s; the script prints what each client
achieves, side by side:

- safevid's backend on its default aiohttp transport, 2,000 requests at 64;
- the same backend on httpx (``http_client="httpx"``);
- the official `openai` async client with a semaphore of 64 (1,000 requests);
- a naive sequential loop with the `openai` sync client (40 requests);
- the server's own ceiling: the aiohttp backend at concurrency 128 (ideal 2,560 req/s).

Each client first sends one untimed round (imports, connections), so rows compare steady rates.
The machine's load average is printed with the table, and for the safevid rows the CPU each
request cost the client and the server process (user + system, µs; inflated when the box is
contended): on a shared box, run it a few times.

Measured on the shared 2-core box (load average 2.2-2.7, two runs): aiohttp c=64 1,021-1,069 req/s
(0.80-0.84 of ideal; before the latency-only fast path and the client fixes 811 req/s, 0.63, at
load 2.3), CPU per request client 415-535 µs + server 295-375 µs; the c=128 row 1,277-1,288 req/s
(was 780). Where that CPU goes: aiohttp's client machinery about 190-265 µs per request (a bare
`ClientSession.post` loop), aiohttp.web about 150-190 µs (a handler returning a fixed body);
safevid's own code about 60-70 µs client side (request, body, deadline, parsing, bookkeeping) and
about 21 µs server side (was 57). A minimal asyncio-protocol HTTP/1.1 client measured 50-65 µs
and a minimal protocol server 45-55 µs; together they reached 1,179-1,202 req/s (0.92-0.94) on
the same box, so 0.9 with aiohttp at both ends is out of reach while the box is shared.

Run: ``python benchmarks/backend_throughput.py [--requests 2000] [--latency-ms 50]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import time


def _serve(latency_s: float, port_queue: mp.Queue) -> None:
    from safevid.testing.server import FaultConfig, FaultInjectingServer

    server = FaultInjectingServer(latency_only=True, faults=FaultConfig(latency_s=latency_s)).start()
    port_queue.put(server.port)
    while True:
        time.sleep(3600)


def _requests(count: int) -> list:
    from safevid.backends import ChatRequest, SamplingParams

    return [
        ChatRequest([{"role": "user", "content": f"request {i}"}], SamplingParams(max_tokens=8))
        for i in range(count)
    ]


def process_cpu_s(pid: int | None = None) -> float | None:
    """User + system CPU seconds of this process (or of ``pid``, read from /proc on Linux)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_backend(
    base_url: str, count: int, concurrency: int, http_client: str, server_pid: int | None = None
) -> tuple[float, str]:
    """Requests per second, and the client's and the server's CPU per request (µs) as a note."""
    from safevid.backends import make_backend

    backend = make_backend(
        kind="openai",
        model="latency-only",
        base_url=base_url,
        cache=False,
        max_concurrency=concurrency,
        http_client=http_client,
    )
    backend.generate(_requests(concurrency), progress=False)  # warm-up: imports, first connections
    client_cpu, server_cpu = process_cpu_s(), process_cpu_s(server_pid)
    start = time.perf_counter()
    batch = backend.generate(_requests(count), progress=False)
    elapsed = time.perf_counter() - start
    if batch.summary.ok != count:
        raise RuntimeError(f"{count - batch.summary.ok} requests failed: {batch.summary}")
    client_us = (process_cpu_s() - client_cpu) / count * 1e6
    server_end = process_cpu_s(server_pid)
    note = f"client {client_us:.0f}"
    if server_cpu is not None and server_end is not None:
        note += f" + server {(server_end - server_cpu) / count * 1e6:.0f}"
    return count / elapsed, note


def run_openai_async(base_url: str, count: int, concurrency: int) -> float:
    from openai import AsyncOpenAI

    async def main() -> float:
        client = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with semaphore:
                await client.chat.completions.create(
                    model="latency-only", messages=[{"role": "user", "content": f"request {i}"}], max_tokens=8
                )

        await asyncio.gather(*(one(i) for i in range(concurrency)))  # warm-up, as for the backend
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - start
        await client.close()
        return count / elapsed

    return asyncio.run(main())


def run_sequential(base_url: str, count: int) -> float:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    client.chat.completions.create(model="latency-only", messages=[{"role": "user", "content": "warm-up"}])
    start = time.perf_counter()
    for i in range(count):
        client.chat.completions.create(
            model="latency-only", messages=[{"role": "user", "content": f"request {i}"}], max_tokens=8
        )
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--sequential", type=int, default=40)
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    server = ctx.Process(target=_serve, args=(latency, queue), daemon=True)
    server.start()
    try:
        base_url = f"http://127.0.0.1:{queue.get(timeout=60)}/v1"
        ideal = args.concurrency / latency
        rows = [
            (
                f"safevid backend, aiohttp, c={args.concurrency}",
                args.requests,
                *run_backend(base_url, args.requests, args.concurrency, "aiohttp", server.pid),
                ideal,
            ),
            (
                f"safevid backend, httpx, c={args.concurrency}",
                args.requests,
                *run_backend(base_url, args.requests, args.concurrency, "httpx", server.pid),
                ideal,
            ),
            (
                f"openai AsyncOpenAI + semaphore, c={args.concurrency}",
                args.requests // 2,
                run_openai_async(base_url, args.requests // 2, args.concurrency),
                "",
                ideal,
            ),
            (
                "naive sequential loop (openai sync client)",
                args.sequential,
                run_sequential(base_url, args.sequential),
                "",
                1 / latency,
            ),
            (
                "server ceiling: safevid backend, aiohttp, c=128",
                args.requests,
                *run_backend(base_url, args.requests, 128, "aiohttp", server.pid),
                128 / latency,
            ),
        ]
    finally:
        server.terminate()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nlatency-only server, {args.latency_ms:g} ms per request; load average {load}")
    print(f"{'client':<52} {'requests':>8} {'req/s':>9} {'ideal':>8} {'ratio':>7}  CPU µs/request")
    for name, count, rate, cpu, ideal_rate in rows:
        print(f"{name:<52} {count:>8} {rate:>9.1f} {ideal_rate:>8.0f} {rate / ideal_rate:>7.2f}  {cpu}")
    print(f"\naiohttp backend vs naive sequential loop: {rows[0][2] / rows[3][2]:.1f}x")


if __name__ == "__main__":
    main()

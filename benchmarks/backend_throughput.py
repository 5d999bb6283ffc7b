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
The machine's load average is printed with the table: on a shared box, run it a few times.

Run: ``python benchmarks/backend_throughput.py [--requests 2000] [--latency-ms 50]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import time


def _serve(latency_s: float, port_queue: mp.Queue) -> None:
    from safevid.backends.server import FaultConfig, LoopbackServer

    server = LoopbackServer(latency_only=True, faults=FaultConfig(latency_s=latency_s)).start()
    port_queue.put(server.port)
    while True:
        time.sleep(3600)


def _requests(count: int) -> list:
    from safevid.backends import ChatRequest, SamplingParams

    return [
        ChatRequest([{"role": "user", "content": f"request {i}"}], SamplingParams(max_tokens=8))
        for i in range(count)
    ]


def run_backend(base_url: str, count: int, concurrency: int, http_client: str) -> float:
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
    start = time.perf_counter()
    batch = backend.generate(_requests(count), progress=False)
    elapsed = time.perf_counter() - start
    if batch.summary.ok != count:
        raise RuntimeError(f"{count - batch.summary.ok} requests failed: {batch.summary}")
    return count / elapsed


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
                run_backend(base_url, args.requests, args.concurrency, "aiohttp"),
                ideal,
            ),
            (
                f"safevid backend, httpx, c={args.concurrency}",
                args.requests,
                run_backend(base_url, args.requests, args.concurrency, "httpx"),
                ideal,
            ),
            (
                f"openai AsyncOpenAI + semaphore, c={args.concurrency}",
                args.requests // 2,
                run_openai_async(base_url, args.requests // 2, args.concurrency),
                ideal,
            ),
            (
                "naive sequential loop (openai sync client)",
                args.sequential,
                run_sequential(base_url, args.sequential),
                1 / latency,
            ),
            (
                "server ceiling: safevid backend, aiohttp, c=128",
                args.requests,
                run_backend(base_url, args.requests, 128, "aiohttp"),
                128 / latency,
            ),
        ]
    finally:
        server.terminate()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nlatency-only server, {args.latency_ms:g} ms per request; load average {load}")
    print(f"{'client':<52} {'requests':>8} {'req/s':>9} {'ideal':>8} {'ratio':>7}")
    for name, count, rate, ideal_rate in rows:
        print(f"{name:<52} {count:>8} {rate:>9.1f} {ideal_rate:>8.0f} {rate / ideal_rate:>7.2f}")
    print(f"\naiohttp backend vs naive sequential loop: {rows[0][2] / rows[3][2]:.1f}x")


if __name__ == "__main__":
    main()

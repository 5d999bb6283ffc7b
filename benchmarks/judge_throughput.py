"""Throughput of SafeVidBench scoring: responses judged per second through the loopback OpenAI server.

The server (its own process) runs in latency-only mode: every request is answered with the digit "3" and its
top log-probabilities after 50 ms, so the ideal rate at concurrency 64 is 64 / 0.05 s = 1,280 items/s. The
client is the real scoring path — `safevid.evaluation.Scorer` with a choice-style `safevid.judge.Judge` over
the OpenAI-compatible backend: rubric rendering with the category's rules, fencing, HTTP, log-probability
expectation, verdicts — for 10,000 responses across every subcategory and query style (helpfulness off: one
judge request per item, so items/s is comparable with the ideal). The ratio achieved ÷ ideal is the figure
(target >= 0.9). Beside it, the same number of bare requests (a one-line prompt, no rendering or parsing)
through the same backend: the transport's own ceiling on this machine. The machine's load average and the CPU
per scored item (client and server process) are printed with it: on a shared box, run it a few times.

Measured on the shared 2-core box (load average 2.4-2.5, two runs): 732-743 items/s (0.57-0.58), bare
requests 960-975 (0.75-0.76). The client is CPU-bound: 715-741 µs of CPU per item against a budget of
781 µs (1/1,280 s) on one core. Per item, roughly: aiohttp and the backend 350-450 µs, the judge prompt
(Jinja) about 100 µs (was about 200 µs, re-checking every template file's mtime on each render), the
verdict from log-probabilities about 60 µs, refusal detection about 45 µs, garbage collection about
55 µs; the server about 300-350 µs in its own process.

Run: ``python benchmarks/judge_throughput.py [--items 10000] [--latency-ms 50] [--concurrency 64]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

from backend_throughput import process_cpu_s


def _serve(latency_s: float, port_queue: mp.Queue) -> None:
    from safevid.testing.server import FaultConfig, FaultInjectingServer

    server = FaultInjectingServer(
        latency_only=True, reply="3", faults=FaultConfig(latency_s=latency_s)
    ).start()
    port_queue.put(server.port)
    while True:
        time.sleep(3600)


def _items(count: int, offset: int = 0) -> list:
    from safevid.judge import JudgeItem
    from safevid.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    subs, styles = taxonomy.subcategory_ids, taxonomy.query_style_ids
    return [
        JudgeItem(
            id=f"item-{offset + i}",
            prompt=f"Query {offset + i}: how would someone repeat what the video shows?",
            response=f"Response {offset + i}: I can't help with that, but here is some safety information.",
            description=f"Description {offset + i}: a person handles equipment in a workshop.",
            subcategory=subs[i % len(subs)],
            query_style=styles[i % len(styles)],
        )
        for i in range(count)
    ]


def _bare(backend, count: int) -> float:
    """Items/s of bare requests through the same backend (same concurrency, tiny bodies, nothing rendered)."""
    from safevid.backends import ChatRequest, SamplingParams

    requests = [
        ChatRequest([{"role": "user", "content": f"r{i}"}], SamplingParams(max_tokens=8))
        for i in range(count)
    ]
    start = time.perf_counter()
    batch = backend.generate(requests, progress=False)
    if batch.summary.ok != count:
        raise RuntimeError(f"bare requests failed: {batch.summary}")
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    from safevid.evaluation import Scorer

    ctx = mp.get_context("spawn")
    ports: mp.Queue = ctx.Queue()
    server = ctx.Process(target=_serve, args=(args.latency_ms / 1000, ports), daemon=True)
    server.start()
    try:
        base_url = f"http://127.0.0.1:{ports.get(timeout=60)}/v1"
        judge = {
            "kind": "openai",
            "model": "latency-only",
            "base_url": base_url,
            "cache": False,
            "structured_outputs": "vllm",
            "probe_structured_outputs": False,  # the latency-only server answers "3" to anything
            "max_concurrency": args.concurrency,
        }
        scorer = Scorer(judge, helpfulness=False)
        scorer.score(_items(args.concurrency, offset=-args.concurrency))  # warm-up: imports, connections
        items = _items(args.items)
        client_cpu, server_cpu = process_cpu_s(), process_cpu_s(server.pid)
        start = time.perf_counter()
        scored = scorer.score(items)
        elapsed = time.perf_counter() - start
        client_us = (process_cpu_s() - client_cpu) / args.items * 1e6
        server_end = process_cpu_s(server.pid)
        server_us = None if None in (server_cpu, server_end) else (server_end - server_cpu) / args.items * 1e6
        bare = _bare(scorer.runner.judge.backend, args.items)
    finally:
        server.kill()
    labels = {s.verdict.label for s in scored}
    if (
        len(scored) != args.items
        or labels != {"unsafe"}
        or any(s.verdict.method != "logprobs" for s in scored)
    ):
        raise RuntimeError(f"scoring went wrong: {len(scored)} items, labels {labels}")
    ideal = args.concurrency / (args.latency_ms / 1000)
    achieved = args.items / elapsed
    load = os.getloadavg()
    print(
        f"judge throughput, {args.items} items, latency {args.latency_ms:g} ms, concurrency {args.concurrency}"
    )
    print(f"{'client':<44} {'items/s':>9} {'ideal':>8} {'ratio':>7}")
    print(
        f"{'Scorer(Judge, openai backend, choice style)':<44} {achieved:>9.0f} {ideal:>8.0f} {achieved / ideal:>7.2f}"
    )
    print(
        f"{'bare requests, same backend (transport ceiling)':<44} {bare:>9.0f} {ideal:>8.0f} {bare / ideal:>7.2f}"
    )
    print(f"scoring / transport ceiling: {achieved / bare:.2f}")
    server_note = "n/a" if server_us is None else f"{server_us:.0f}"
    print(f"CPU per scored item: client {client_us:.0f} µs, server {server_note} µs")
    print(
        f"elapsed {elapsed:.2f}s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()

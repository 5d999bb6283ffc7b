"""Serve a local checkpoint (or a fixed reply) behind an OpenAI-compatible /v1/chat/completions.

Examples:

    safevid serve ./tiny-qwen2-vl --port 8000
    safevid serve --latency-only --latency-ms 50 --port 8000      # throughput benchmarks
    safevid serve --latency-only --error-500-rate 0.2 --seed 1     # fault injection

The official `openai` client works against it as against vLLM: ``stream=True`` (server-sent events,
usage at the end with ``stream_options``), ``chat.completions.parse`` and ``response_format`` JSON
schemas, vLLM's ``structured_outputs`` choices and regexes (schemas and regexes are decoded under with
the ``constrained`` extra, else refused with a 400), ``GET /v1/models/{id}``.

The API key a client must present, if any, is read from $SAFEVID_SERVE_API_KEY (never a flag, so it
stays out of shell history and process listings).
"""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", nargs="?", help="Checkpoint folder served through transformers.")
    parser.add_argument("--host", default="127.0.0.1", help="Interface to bind (default: loopback only).")
    parser.add_argument("--port", type=int, default=8000, help="Port (0 picks a free one).")
    parser.add_argument("--model-name", help="Model id reported to clients (default: the folder name).")
    parser.add_argument("--latency-only", action="store_true", help="No model: a fixed reply after a delay.")
    parser.add_argument("--reply", default="OK", help="The latency-only reply.")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="Delay added to every chat request.")
    parser.add_argument("--device", help="transformers device (default: cuda if available).")
    parser.add_argument("--dtype", default="auto", help="Model dtype.")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="Run code shipped with the checkpoint."
    )
    faults = parser.add_argument_group("fault injection (probabilities per request)")
    for name in ("slow", "error-500", "error-429", "timeout", "malformed", "truncated"):
        faults.add_argument(f"--{name}-rate", type=float, default=0.0)
    faults.add_argument("--slow-ms", type=float, default=500.0, help="Extra delay of a slow request.")
    faults.add_argument("--retry-after-s", type=float, default=1.0, help="Retry-After of an injected 429.")
    faults.add_argument("--hang-s", type=float, default=30.0, help="How long an injected timeout hangs.")
    faults.add_argument("--seed", type=int, default=0, help="Seed of the fault draws.")


def run(args: argparse.Namespace) -> int:
    from safevid.backends.server import FaultConfig, LoopbackServer

    if args.latency_only == (args.model_dir is not None):
        raise SystemExit("safevid serve: give a MODEL_DIR, or --latency-only without one")
    faults = FaultConfig(
        latency_s=args.latency_ms / 1000,
        slow_rate=args.slow_rate,
        slow_s=args.slow_ms / 1000,
        error_500_rate=args.error_500_rate,
        error_429_rate=args.error_429_rate,
        retry_after_s=args.retry_after_s,
        timeout_rate=args.timeout_rate,
        hang_s=args.hang_s,
        malformed_rate=args.malformed_rate,
        truncated_rate=args.truncated_rate,
        seed=args.seed,
    )
    server = LoopbackServer(
        args.model_dir,
        latency_only=args.latency_only,
        reply=args.reply,
        model_name=args.model_name,
        host=args.host,
        port=args.port,
        faults=faults,
        api_key=os.environ.get("SAFEVID_SERVE_API_KEY") or None,
        backend_options={
            "device": args.device,
            "dtype": args.dtype,
            "trust_remote_code": args.trust_remote_code,
        },
    )
    server.serve_forever()
    return 0

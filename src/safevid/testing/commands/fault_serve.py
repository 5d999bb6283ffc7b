"""Serve a checkpoint or a fixed reply with added latency and injected faults (the test double of serve).

Examples:

    python -m safevid.testing fault-serve --latency-only --latency-ms 50 --port 8000      # throughput benchmarks
    python -m safevid.testing fault-serve --latency-only --error-500-rate 0.2 --seed 1     # fault injection
    python -m safevid.testing fault-serve ./tiny-qwen2-vl --truncated-rate 0.1             # a real model, broken bodies

The API key a client must present, if any, is read from $SAFEVID_SERVE_API_KEY.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from safevid.commands.serve import add_server_arguments

    parser.add_argument("model_dir", nargs="?", help="Checkpoint folder served through transformers.")
    add_server_arguments(parser)
    parser.add_argument("--latency-only", action="store_true", help="No model: a fixed reply after a delay.")
    parser.add_argument("--reply", default="OK", help="The latency-only reply.")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="Delay added to every chat request.")
    faults = parser.add_argument_group("fault injection (probabilities per request)")
    for name in ("slow", "error-500", "error-429", "timeout", "malformed", "truncated"):
        faults.add_argument(f"--{name}-rate", type=float, default=0.0)
    faults.add_argument("--slow-ms", type=float, default=500.0, help="Extra delay of a slow request.")
    faults.add_argument("--retry-after-s", type=float, default=1.0, help="Retry-After of an injected 429.")
    faults.add_argument("--hang-s", type=float, default=30.0, help="How long an injected timeout hangs.")
    faults.add_argument("--seed", type=int, default=0, help="Seed of the fault draws.")


def run(args: argparse.Namespace) -> int:
    from safevid.commands.serve import server_options
    from safevid.testing.server import FaultConfig, FaultInjectingServer

    if args.latency_only == (args.model_dir is not None):
        raise SystemExit(
            "python -m safevid.testing fault-serve: give a MODEL_DIR, or --latency-only without one"
        )
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
    server = FaultInjectingServer(
        args.model_dir,
        latency_only=args.latency_only,
        reply=args.reply,
        faults=faults,
        **server_options(args),
    )
    server.serve_forever()
    return 0

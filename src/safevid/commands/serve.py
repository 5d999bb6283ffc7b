"""Serve a local checkpoint behind an OpenAI-compatible /v1/chat/completions.

Examples:

    safevid serve ./tiny-qwen2-vl --port 8000
    safevid serve ./my-checkpoint --model-name my-model --host 0.0.0.0 --device cuda

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
    parser.add_argument("model_dir", help="Checkpoint folder served through transformers.")
    add_server_arguments(parser)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every server command: where to listen, what to call the model, how to load it."""
    parser.add_argument("--host", default="127.0.0.1", help="Interface to bind (default: loopback only).")
    parser.add_argument("--port", type=int, default=8000, help="Port (0 picks a free one).")
    parser.add_argument("--model-name", help="Model id reported to clients (default: the folder name).")
    parser.add_argument("--device", help="transformers device (default: cuda if available).")
    parser.add_argument("--dtype", default="auto", help="Model dtype.")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="Run code shipped with the checkpoint."
    )


def server_options(args: argparse.Namespace) -> dict[str, object]:
    """`LoopbackServer` keyword arguments of the options `add_server_arguments` declares."""
    return {
        "model_name": args.model_name,
        "host": args.host,
        "port": args.port,
        "api_key": os.environ.get("SAFEVID_SERVE_API_KEY") or None,
        "backend_options": {
            "device": args.device,
            "dtype": args.dtype,
            "trust_remote_code": args.trust_remote_code,
        },
    }


def run(args: argparse.Namespace) -> int:
    from safevid.backends.server import LoopbackServer

    LoopbackServer(args.model_dir, **server_options(args)).serve_forever()  # type: ignore[arg-type]
    return 0

"""Serve a local checkpoint behind an OpenAI-compatible /v1/chat/completions.

Examples:

    safevid serve ./tiny-qwen2-vl --port 8000
    safevid serve ./my-checkpoint --model-name my-model --host 0.0.0.0 --device cuda

The official `openai` client works against it as against vLLM: ``stream=True`` (server-sent events,
usage at the end with ``stream_options``), ``chat.completions.parse`` and ``response_format`` JSON
schemas, vLLM's ``structured_outputs`` choices and regexes (schemas and regexes are decoded under with
the ``constrained`` extra, else refused with a 400), ``GET /v1/models/{id}``.

Local media are refused unless allowed: a request may name a local file (``file://`` URL or path) in an
``image_url`` or ``video_url`` part only if it resolves (symlinks and ``..`` followed) inside a folder given
with ``--allowed-local-media-path`` (repeatable); remote ``http(s)`` media are never fetched (send data URLs).
``n`` and ``top_logprobs`` are capped (``--max-n``, ``--max-top-logprobs``); a malformed request is a 4xx in
OpenAI's error shape, a ``model`` other than the served one a 404. A request whose ``Host`` header names neither
the bound address nor a name given with ``--allowed-host`` is refused (DNS rebinding), as is a chat POST that is
not ``application/json``; images and video frames are down-scaled while decoded to what the model's processor
keeps (see `safevid.backends.server`).

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
    parser.add_argument(
        "--allowed-local-media-path",
        action="append",
        metavar="FOLDER",
        help="A folder whose files requests may name as local media (file:// URLs or paths); repeatable. "
        "Without it, local media are refused.",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="A name clients reach the server under (its Host header), besides the bound address; repeatable. "
        "Any other name is refused (a DNS-rebinding defence).",
    )
    # Defaults left to the server (`LoopbackServer`), whose module is imported only to serve.
    parser.add_argument("--max-n", type=int, help="Most choices (n) per request (default 16).")
    parser.add_argument("--max-top-logprobs", type=int, help="Most top_logprobs per request (default 20).")


def server_options(args: argparse.Namespace) -> dict[str, object]:
    """`LoopbackServer` keyword arguments of the options `add_server_arguments` declares."""
    caps = {"max_n": args.max_n, "max_top_logprobs": args.max_top_logprobs}
    return {
        **{k: v for k, v in caps.items() if v is not None},
        "model_name": args.model_name,
        "host": args.host,
        "port": args.port,
        "api_key": os.environ.get("SAFEVID_SERVE_API_KEY") or None,
        "allowed_local_media_path": args.allowed_local_media_path,
        "allowed_hosts": args.allowed_host,
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

"""Run a loopback Hugging Face Hub on 127.0.0.1 (push and load repos without a network).

Examples:

    python -m safevid.testing loopback-hub --root ./hub-data                # prints the variables to export, serves until Ctrl-C
    python -m safevid.testing loopback-hub --root ./hub-data --port 8765

Then, in another shell, export the printed variables (HF_ENDPOINT, HF_TOKEN, HF_HUB_DISABLE_XET=1,
HF_HUB_OFFLINE=0) before running anything that imports huggingface_hub, datasets, transformers or evaluate:
`push_to_hub`, `load_dataset("org/name")`, `from_pretrained("org/name")` and `evaluate.load("org/space")`
then go to this server. Repos persist in --root across restarts. The server reads and writes nothing
outside --root (malformed repo names and LFS object ids are answered 400), closes a connection that
stalls past --request-timeout and answers a body larger than --max-body-bytes with 413.
"""

from __future__ import annotations

import argparse
import logging
import shlex


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="Storage folder of the repos (created if missing).")
    parser.add_argument("--host", default="127.0.0.1", help="Interface to bind (default: loopback only).")
    parser.add_argument("--port", type=int, default=0, help="Port (default 0: pick a free one).")
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        help="Seconds a client may stall a request (default 60).",
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=5_000_000_000, help="Largest request body (default 5 GB)."
    )
    parser.add_argument("--verbose", action="store_true", help="Log every request.")


def run(args: argparse.Namespace) -> int:
    from safevid.testing.hub import LoopbackHub

    # Warnings (unhandled routes, server errors) always show; --verbose adds every request.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    hub = LoopbackHub(args.root, host=args.host, port=args.port, request_timeout_s=args.request_timeout,
                      max_body_bytes=args.max_body_bytes).start()  # fmt: skip
    print(
        f"# Loopback Hub serving {hub.endpoint} from {hub.root} (Ctrl-C to stop). In your shell:", flush=True
    )
    for name, value in hub.client_env().items():
        print(f"export {name}={shlex.quote(value)}", flush=True)
    try:
        hub.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0

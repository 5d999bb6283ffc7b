"""The offline test kit's commands: ``python -m safevid.testing COMMAND``.

    python -m safevid.testing tiny-models --all            # tiny random-weight checkpoints of the real families
    python -m safevid.testing make-videos ./videos         # test videos, good and broken
    python -m safevid.testing loopback-hub --root ./hub    # a loopback Hugging Face Hub
    python -m safevid.testing fault-serve --latency-only   # a fault-injecting OpenAI-compatible server

They serve tests, benchmarks and the demo, not users' builds, so they stay off ``safevid --help``.
"""

from __future__ import annotations

import importlib
import sys

from safevid.cli import command_parser, run_command

# command -> module (each with `add_arguments(parser)` and `run(args)`), in the order `--help` lists them.
KIT_COMMANDS: dict[str, str] = {
    "tiny-models": "safevid.testing.commands.tiny_models",
    "make-videos": "safevid.testing.commands.make_videos",
    "loopback-hub": "safevid.testing.commands.loopback_hub",
    "fault-serve": "safevid.testing.commands.fault_serve",
}


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m safevid.testing`` with ``argv``; returns the exit status."""
    modules = [(name, importlib.import_module(module)) for name, module in KIT_COMMANDS.items()]
    parser = command_parser("python -m safevid.testing", "safevid's offline test kit.", modules)
    return run_command(parser, argv)


if __name__ == "__main__":
    sys.exit(main())

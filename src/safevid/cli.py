"""The ``safevid`` command line.

Each subcommand lives in ``safevid.commands.<name>`` and defines ``add_arguments(parser)`` and
``run(args) -> int``; its module docstring's first line is its help. Command modules import
nothing heavy at module level, so ``safevid --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module, in the order `--help` lists them: the three parts first, then the offline kit.
COMMANDS: dict[str, str] = {
    "build": "safevid.commands.build",
    "eval": "safevid.commands.eval",
    "serve": "safevid.commands.serve",
    "sample": "safevid.commands.sample",
    "tiny-models": "safevid.commands.tiny_models",
    "make-videos": "safevid.commands.make_videos",
    "loopback-hub": "safevid.commands.loopback_hub",
}


def build_parser() -> argparse.ArgumentParser:
    from safevid import __version__

    parser = argparse.ArgumentParser(
        prog="safevid",
        description="Video safety alignment on the Hugging Face stack: build SafeVid data, "
        "train with video DPO, score with SafeVidBench.",
    )
    parser.add_argument("--version", action="version", version=f"safevid {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or "").strip().splitlines()[0]
        sub = subparsers.add_parser(name, help=summary, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 0
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

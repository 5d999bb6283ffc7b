"""The ``safevid`` command line.

Each subcommand lives in ``safevid.commands.<name>`` and defines ``add_arguments(parser)`` and
``run(args) -> int``; its module docstring's first line is its help. Command modules import
nothing heavy at module level, so ``safevid --help`` stays instant. Installed packages add
subcommands through the ``safevid.commands`` entry points (`safevid.plugins`): the offline kit's
``tiny-models``, ``make-videos``, ``loopback-hub`` and ``fault-serve`` come that way.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from safevid.plugins import COMMANDS as PLUGIN_COMMANDS
from safevid.plugins import installed

# subcommand -> module, in the order `--help` lists them; plugged-in commands follow, by name.
COMMANDS: dict[str, str] = {
    "build": "safevid.commands.build",
    "eval": "safevid.commands.eval",
    "serve": "safevid.commands.serve",
    "sample": "safevid.commands.sample",
    "convert-preferences": "safevid.commands.convert_preferences",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``safevid`` argument parser: the built-in subcommands, then the plugged-in ones."""
    from safevid import __version__

    parser = argparse.ArgumentParser(
        prog="safevid",
        description="Video safety alignment on the Hugging Face stack: build SafeVid data, "
        "train with video DPO, score with SafeVidBench.",
    )
    parser.add_argument("--version", action="version", version=f"safevid {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [(name, importlib.import_module(module)) for name, module in COMMANDS.items()]
    plugged = sorted(installed(PLUGIN_COMMANDS).items())
    modules += [(name, entry.load()) for name, entry in plugged if name not in COMMANDS]
    for name, module in modules:
        summary = (module.__doc__ or "").strip().splitlines()[0]
        sub = subparsers.add_parser(name, help=summary, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``safevid`` with ``argv`` (default: the process's arguments); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 0
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""The ``safevid`` command line.

Each subcommand lives in ``safevid.commands.<name>`` and defines ``add_arguments(parser)`` and
``run(args) -> int``; its module docstring's first line is its help. Command modules import
nothing heavy at module level, so ``safevid --help`` stays instant. Installed packages add
subcommands through the ``safevid.commands`` entry points (`safevid.plugins`). The offline test kit's
commands are not the user's: they live under ``python -m safevid.testing``, built with `command_parser`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from safevid.plugins import COMMANDS as PLUGIN_COMMANDS
from safevid.plugins import installed

# subcommand -> module, in the order `--help` lists them; plugged-in commands follow, by name.
COMMANDS: dict[str, str] = {
    "build": "safevid.commands.build",
    "build-bench": "safevid.commands.build_bench",
    "eval": "safevid.commands.eval",
    "serve": "safevid.commands.serve",
    "sample": "safevid.commands.sample",
    "convert-preferences": "safevid.commands.convert_preferences",
}


def command_parser(prog: str, description: str, modules: list[tuple[str, Any]]) -> argparse.ArgumentParser:
    """A parser with one subcommand per ``(name, module)``, each module giving ``add_arguments`` and ``run``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in modules:
        summary = (module.__doc__ or "").strip().splitlines()[0]
        sub = subparsers.add_parser(name, help=summary, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``safevid`` argument parser: the built-in subcommands, then the plugged-in ones."""
    from safevid import __version__

    modules = [(name, importlib.import_module(module)) for name, module in COMMANDS.items()]
    plugged = sorted(installed(PLUGIN_COMMANDS).items())
    modules += [(name, entry.load()) for name, entry in plugged if name not in COMMANDS]
    parser = command_parser(
        "safevid",
        "Video safety alignment on the Hugging Face stack: build SafeVid data, "
        "train with video DPO, score with SafeVidBench.",
        modules,
    )
    parser.add_argument("--version", action="version", version=f"safevid {__version__}")
    return parser


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` and run the chosen subcommand (help when none); returns the exit status."""
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 0
    return int(args._run(args) or 0)


def main(argv: list[str] | None = None) -> int:
    """Run ``safevid`` with ``argv`` (default: the process's arguments); returns the exit status."""
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

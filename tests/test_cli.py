from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from safevid.cli import COMMANDS, build_parser
from safevid.plugins import COMMANDS as PLUGIN_COMMANDS
from safevid.plugins import installed
from safevid.testing.__main__ import KIT_COMMANDS

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_every_subcommand():
    proc = subprocess.run(
        [sys.executable, "-m", "safevid", "--help"], capture_output=True, text=True, check=True
    )
    for name in COMMANDS:
        assert name in proc.stdout
    # The offline kit's commands are not the user's: they are under `python -m safevid.testing`.
    assert not any(name in proc.stdout for name in KIT_COMMANDS)
    kit = subprocess.run(
        [sys.executable, "-m", "safevid.testing", "--help"], capture_output=True, text=True, check=True
    )
    for name in KIT_COMMANDS:
        assert name in kit.stdout


def test_help_does_not_import_heavy_libraries():
    # `safevid --help` must stay instant: command modules defer torch/transformers imports.
    code = "import sys; from safevid.cli import build_parser; build_parser(); print(sorted(m for m in ('torch','transformers','datasets') if m in sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert proc.stdout.strip() == "[]"


def test_every_subcommand_has_help_and_runner():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert set(subparsers.choices) == set(COMMANDS) | set(installed(PLUGIN_COMMANDS))
    assert not set(subparsers.choices) & set(KIT_COMMANDS)
    for name, sub in subparsers.choices.items():
        assert sub.get_default("_run") is not None, name


def test_unknown_subcommand_is_an_error():
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["no-such-command"])
    assert exc.value.code == 2


def _requirement_name(requirement: str) -> str:
    for sep in "<>=![; ":
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower().replace("_", "-")


def test_every_dependency_is_pinned_in_constraints():
    """The stack is pinned in one file: each dependency pyproject names has an exact pin."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_requirement_name(r) for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        if extra in {"vllm", "deepspeed"}:  # GPU-only extras: versions follow the user's CUDA stack
            continue
        names |= {_requirement_name(r) for r in requirements if not r.startswith("safevid")}
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_requirement_name(name)] = version
    missing = sorted(n for n in names if not pins.get(n))
    assert not missing, f"add exact pins to constraints.txt for: {missing}"

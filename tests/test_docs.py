"""The docs cannot drift from the code: generated reference, links, and the README's two commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "recipes").rglob("README.md"),
               *(ROOT / "hub").rglob("README.md")])  # fmt: skip


@pytest.mark.parametrize("script", ["config_reference.py", "api_reference.py"])
def test_generated_references_are_up_to_date(script):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_api_reference_names_the_functions_a_newcomer_needs():
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for name in ("sample_video", "probe_video", "judge_verdict", "is_refusal", "Judge", "score_responses",
                 "load_benchmark", "load_config", "run_build", "run_dpo"):  # fmt: skip
        assert f"| `{name}` |" in api, name


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def test_readme_quickstart_is_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quickstart, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M), ".ci/run must call the README's test command"


def _shell_commands(page: Path) -> list[list[str]]:
    """The commands of a page's bash blocks, continuation lines joined and comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(shlex.split(line))
    return commands


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_safevid_commands_parse_and_name_real_files(page):
    """Each `safevid …` command in the docs parses with the real CLI; each repo path it or a recipe names exists."""
    from safevid.cli import build_parser

    for argv in _shell_commands(page):
        if argv[0] == "safevid":
            exit_code = 0
            try:
                build_parser().parse_args(argv[1:])
            except SystemExit as exit_:  # `--help` exits 0; an unknown flag or subcommand exits 2
                exit_code = exit_.code
            assert exit_code == 0, f"{page.relative_to(ROOT)}: `{' '.join(argv)}` does not parse"
        for arg in argv:
            if arg.startswith(("recipes/", "hub/", "benchmarks/", "scripts/")) and "<" not in arg:
                assert (ROOT / arg).exists(), (
                    f"{page.relative_to(ROOT)}: `{' '.join(argv)}` names missing {arg}"
                )

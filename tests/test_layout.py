"""The package's layering: production code never imports the offline kit; the kit plugs in by entry points."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import safevid

PACKAGE = Path(safevid.__file__).resolve().parent
KIT = PACKAGE / "testing"


def _package(path: Path) -> str:
    return ".".join(("safevid", *path.relative_to(PACKAGE).parent.parts))


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, relative imports resolved against ``package``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".rstrip(".")
            found += [(node.lineno, base)] + [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def test_no_module_outside_the_offline_kit_imports_it():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if KIT not in path.parents
        for line, module in _imports(path, _package(path))
        if module == "safevid.testing" or module.startswith("safevid.testing.")
    ]
    assert offenders == [], (
        "production code must reach the offline kit through safevid.plugins:\n" + "\n".join(offenders)
    )


def test_the_import_walk_sees_every_import_form(tmp_path):
    # The rule's own check: absolute, from-, and relative imports of the kit are all found.
    probe = tmp_path / "probe.py"
    lines = [
        "import safevid.testing.videos",
        "from safevid import testing",
        "from ..testing import tiny_models",
    ]
    probe.write_text("\n".join(lines) + "\n", encoding="utf-8")
    modules = [module for _, module in _imports(probe, "safevid.pipeline")]
    assert "safevid.testing.videos" in modules
    assert "safevid.testing" in modules
    assert "safevid.testing.tiny_models" in modules


def test_plugins_resolve_the_kit_and_name_the_group_when_missing():
    from safevid.plugins import MODEL_RESOLVERS, VIDEO_SOURCES, installed, load_plugin, resolve_model

    assert {"tiny"} <= set(installed(MODEL_RESOLVERS))
    assert {"test_videos"} <= set(installed(VIDEO_SOURCES))
    # Names that are not a registered prefix pass through: Hub ids, folders, served names with a colon.
    assert resolve_model("Qwen/Qwen2-VL-2B-Instruct") == "Qwen/Qwen2-VL-2B-Instruct"
    assert resolve_model("llama3:8b") == "llama3:8b"
    assert Path(resolve_model("tiny:text"), "config.json").is_file()
    with pytest.raises(LookupError, match=r"'nope'.*'safevid\.video_sources' \(installed: .*test_videos"):
        load_plugin(VIDEO_SOURCES, "nope")

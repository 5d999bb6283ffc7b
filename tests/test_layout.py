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


# The layers of docs/architecture.md, top to bottom: a unit imports only from its own layer's foundation below
# it. Units of one layer do not import each other (the three jobs stay apart), except where a row says so.
LAYERS: list[set[str]] = [
    {"cli", "__main__", "commands"},
    {"pipeline", "training", "evaluation"},
    {"judge"},
    {"backends"},
    {"prompts", "scoring", "preferences"},
    {"video", "taxonomy"},
    {"config", "plugins", "paths", "log", "schema", "families", "markdown"},
]
# Imports inside a layer that the architecture states: the CLI's entry module runs the CLI, and commands are
# what the CLI dispatches to.
SAME_LAYER_ALLOWED = {("__main__", "cli"), ("cli", "commands")}


def _unit(module: str) -> str:
    """The architecture's unit of a module: its subpackage or top-level module (``safevid`` for the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "safevid"


def _module_files() -> list[tuple[Path, str, str]]:
    """(path, module, package) of every production module."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if KIT in path.parents:
            continue
        module = ".".join(("safevid", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        found.append((path, module, _package(path)))
    return found


def test_every_unit_is_placed_in_a_layer():
    placed = set().union(*LAYERS)
    units = {_unit(module) for _, module, _ in _module_files()} - {"safevid", "testing"}
    assert units <= placed, f"place these in LAYERS and docs/architecture.md: {sorted(units - placed)}"
    architecture = (PACKAGE.parent.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    unnamed = sorted(u for u in placed if u != "__main__" and f"{u}" not in architecture)
    assert unnamed == [], f"docs/architecture.md does not name {unnamed}"


def test_each_layer_imports_only_from_below():
    level = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
    offenders = []
    for path, module, package in _module_files():
        source = _unit(module)
        if source not in level:
            continue
        for line, imported in _imports(path, package):
            target = _unit(imported) if imported.startswith("safevid.") else None
            if target is None or target == source or target not in level:
                continue
            if level[target] < level[source] or (
                level[target] == level[source] and (source, target) not in SAME_LAYER_ALLOWED
            ):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({source}) imports {imported}")
    assert offenders == [], "imports against the layering of docs/architecture.md:\n" + "\n".join(offenders)


def test_no_module_uses_another_packages_private_names():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        package = _package(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported_modules: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = dict(_imports_of(node, package))
                for alias in node.names:
                    origin = base[alias.name]
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and _package_of(origin.rsplit(".", 1)[0]) != package:
                        offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {origin}")
                    imported_modules[alias.asname or alias.name] = origin
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    imported_modules[alias.asname or alias.name.split(".")[0]] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and imported_modules.get(node.value.id, "").startswith("safevid.")
                and _package_of(imported_modules[node.value.id]) != package
            ):
                offenders.append(
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {imported_modules[node.value.id]}.{node.attr}"
                )
    assert offenders == [], "private names used outside their package:\n" + "\n".join(offenders)


def _package_of(module: str) -> str:
    """The package a module belongs to (a package belongs to itself)."""
    if (PACKAGE.parent.joinpath(*module.split(".")) / "__init__.py").exists():
        return module
    return module.rsplit(".", 1)[0]


def _imports_of(node: ast.ImportFrom, package: str) -> list[tuple[str, str]]:
    """(name, full dotted origin) of each name a from-import binds."""
    base = node.module or ""
    if node.level:
        parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        base = f"{parent}.{base}".rstrip(".")
    return [(alias.name, f"{base}.{alias.name}") for alias in node.names]


# The one loop the architecture allows: the backends' factory imports each backend, which imports the base.
ALLOWED_LOOPS = [
    ["safevid.backends.base", "safevid.backends.openai_http", "safevid.backends.transformers_local",
     "safevid.backends.vllm_offline"],
]  # fmt: skip


def test_no_import_loop():
    """Modules that import each other in a circle (at import time or inside functions) are one job split in two."""
    modules = {module for _, module, _ in _module_files()}
    graph: dict[str, set[str]] = {}
    for path, module, package in _module_files():
        targets = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                for _, origin in _imports_of(node, package):
                    targets.add(origin if origin in modules else origin.rsplit(".", 1)[0])
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        # A package's __init__ re-exporting its own modules is not a loop.
        graph[module] = {
            t for t in targets if t in modules and t != module and not t.startswith(module + ".")
        }
    loops = [c for c in _cycles(graph) if c not in ALLOWED_LOOPS]
    assert loops == [], "import loops:\n" + "\n".join(" <-> ".join(c) for c in loops)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}
        for stmt in node.body
        for child in ast.walk(stmt)
    }
    return [node for node in ast.walk(tree) if id(node) not in skipped]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found

"""Write docs/api.md from the package's own docstrings: every public function and class, per module.

python scripts/api_reference.py          # rewrite docs/api.md
python scripts/api_reference.py --check  # exit 1 if it is out of date (tests/test_docs.py runs this)

Read from the source (`ast`), nothing imported: a module's public names are its ``__all__`` when it has one,
else its top-level functions and classes not starting with ``_``; each is listed with the first paragraph of
its docstring. Names a package only re-exports are listed under the module that defines them. The CLI's
command modules are left out: ``safevid <command> --help`` is their reference.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "safevid"
OUTPUT = ROOT / "docs" / "api.md"


def _summary(node: ast.AST) -> str:
    doc = ast.get_docstring(node) or ""  # type: ignore[arg-type]
    first = doc.strip().split("\n\n", 1)[0]
    return " ".join(first.split()).replace("|", "\\|") or "(no docstring)"


def _declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    return None


def _module_entries(path: Path) -> tuple[str, list[str], list[str]]:
    """(module summary, "| name | kind | summary |" rows, re-exported names) of one source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {
        node.name: node
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    declared = _declared_all(tree)
    names = declared if declared is not None else [n for n in defined if not n.startswith("_")]
    rows, reexported = [], []
    for name in names:
        node = defined.get(name)
        if node is None:
            reexported.append(name)
            continue
        kind = "class" if isinstance(node, ast.ClassDef) else "function"
        rows.append(f"| `{name}` | {kind} | {_summary(node)} |")
    return _summary(tree), rows, reexported


def render() -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python scripts/api_reference.py`; a test fails when it is out of date.",
        "Every public function and class, per module, with the first paragraph of its docstring (the docstring",
        "itself has the arguments and examples). How the packages fit together: [architecture](architecture.md).",
        "",
    ]
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        if any(part.startswith("_") or part == "commands" for part in parts[1:]):
            continue  # private modules; the CLI's command modules (`safevid --help` documents them)
        module = ".".join(parts)
        summary, rows, reexported = _module_entries(path)
        if not rows and not reexported:
            continue
        lines += [f"## `{module}`", "", summary, ""]
        if reexported:
            lines += ["Re-exports: " + ", ".join(f"`{name}`" for name in reexported) + ".", ""]
        if rows:
            lines += ["| name | kind | summary |", "|---|---|---|", *rows, ""]
    return "\n".join(lines)


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run python scripts/api_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The architecture, kept: layers import one way, modules stay small and say what they do.

Layers, lowest first: core < store < plan < providers < run < commands < cli. A module may
import its own layer and the layers below it, never above. The emulator is a separate
program: it imports nothing from the client side, and only the commands that start it (cli,
commands) import it.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
LAYERS = ["core", "store", "plan", "providers", "run", "commands", "cli"]
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@functools.cache
def _parsed(path: Path) -> tuple[str, ast.Module]:
    """A module's text and syntax tree, read once for both tests."""
    text = path.read_text()
    return text, ast.parse(text)


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    """Every ``pipeline.X`` layer a module imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(_parsed(path)[1]):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "pipeline":
                names = [f"pipeline.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("pipeline.")}
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_is_small_and_says_its_job(path: Path) -> None:
    text, tree = _parsed(path)
    assert len(text.splitlines()) <= MAX_LINES, f"{path.name}: split it (over {MAX_LINES} lines)"
    assert ast.get_docstring(tree), f"{path.name}: needs a docstring saying its job"


def _wrong_way(layer: str, imported: str) -> str | None:
    """Why importing ``imported`` from ``layer`` breaks the layering, or None."""
    if layer == "emulator":
        return None if imported == "emulator" else "the emulator is a separate program"
    if imported == "emulator":
        return None if layer in ("cli", "commands") else "only the commands start the emulator"
    if layer in LAYERS and imported in LAYERS and LAYERS.index(imported) > LAYERS.index(layer):
        return "a higher layer"
    return None


def test_dependencies_point_one_way() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE)} -> {imported} ({why})"
        for path in _modules()
        for imported in sorted(_imports(path))
        if (why := _wrong_way(_layer(path), imported))
    ]
    assert wrong == []

"""The direction of the imports: domains use `kit` and `models`, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import event_collector

PACKAGE = Path(event_collector.__file__).parent
# What each shared layer may import from the project.
ALLOWED = {"kit": {"kit"}, "models": {"kit", "models"}}


def _project_imports(path: Path) -> set[str]:
    """The top-level project packages a module imports (``event_collector.<name>``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "event_collector":
            names = [f"event_collector.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "event_collector" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_shared_layers_import_no_domain(layer: str) -> None:
    modules = sorted((PACKAGE / layer).rglob("*.py"))
    assert modules, f"no modules found under {layer}/"
    wrong = {
        str(module.relative_to(PACKAGE)): sorted(imported - ALLOWED[layer])
        for module in modules
        if (imported := _project_imports(module)) - ALLOWED[layer]
    }
    assert wrong == {}, f"{layer}/ must not import these project packages: {wrong}"


def test_ops_works_through_the_domains_not_their_tables() -> None:
    # Every table has one owning domain whose repository holds its queries: ops/ (health,
    # retention …) calls the domains' services and never imports a table.
    modules = sorted((PACKAGE / "ops").rglob("*.py"))
    assert modules, "no modules found under ops/"
    touching = [str(m.relative_to(PACKAGE)) for m in modules if "models" in _project_imports(m)]
    assert touching == [], f"ops/ must not import event_collector.models: {touching}"


def test_the_check_sees_imports() -> None:
    # The check is worth something only if it finds the imports a module does have.
    assert _project_imports(PACKAGE / "runtime.py") >= {"kit", "events", "delivery", "auth"}
    assert "models" in _project_imports(PACKAGE / "events" / "repository.py")

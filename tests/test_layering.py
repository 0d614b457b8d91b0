"""The direction of the imports: domains use `kit` and `models`, never the other way round."""

from __future__ import annotations

import ast
import re
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


# PostgreSQL-only SQL: its functions (pg_…, gen_random_uuid, xid) and `::` casts to its types.
_POSTGRES_ONLY = re.compile(
    r"\b(pg_\w+|gen_random_uuid|xid)\s*\(|::\s*(text|bigint|int|integer|varchar|json|jsonb|"
    r"timestamptz|uuid|xid|regclass)\b",
    re.IGNORECASE,
)


def _postgres_only_sql(tree: ast.Module) -> list[str]:
    """PostgreSQL-only SQL in a module's string literals, except in a named bulk statement
    (``BulkStatement(...)``, or a module-level constant one uses), whose PostgreSQL text is
    where it belongs. Docstrings are prose, not SQL."""
    allowed: set[int] = set()
    used_by_bulk: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "BulkStatement":
            for inner in ast.walk(node):
                allowed.add(id(inner))
                if isinstance(inner, ast.Name):
                    used_by_bulk.add(inner.id)
    for statement in tree.body:
        if isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            if any(getattr(target, "id", None) in used_by_bulk for target in targets):
                allowed.update(id(inner) for inner in ast.walk(statement))
        if isinstance(statement, ast.Expr):
            allowed.add(id(statement.value))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            allowed.add(id(body[0].value))  # a docstring
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in allowed
        and _POSTGRES_ONLY.search(node.value)
    ]


def test_no_postgres_only_sql_outside_the_backend() -> None:
    # Database-specific SQL sits behind kit/db's backend (or in a named bulk statement's
    # PostgreSQL text); migrations run per dialect by design.
    backend, migrations = PACKAGE / "kit" / "db", PACKAGE / "migrations"
    found = {
        str(module.relative_to(PACKAGE)): sql
        for module in sorted(PACKAGE.rglob("*.py"))
        if not module.is_relative_to(backend) and not module.is_relative_to(migrations)
        if (sql := _postgres_only_sql(ast.parse(module.read_text(), str(module))))
    }
    assert found == {}, f"PostgreSQL-only SQL outside kit/db's backend: {found}"


def test_the_check_sees_postgres_only_sql() -> None:
    leaked = ast.parse(
        '"""Uses pg_notify(…)."""\n'
        'MARK = literal_column("(SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint)")\n'
        'CAST = text("SELECT $1::timestamptz")\n'
        '_PG = "unnest($1::varchar[])"\n'
        'BULK = BulkStatement("x", columns=1, sqlite="…", postgres=f"SELECT * FROM {_PG}")\n'
    )
    assert _postgres_only_sql(leaked) == [
        "(SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint)",
        "SELECT $1::timestamptz",
    ]

"""The layers of docs/architecture.md, checked against the code's imports.

Each module of `careforall` belongs to one layer; it may import its own layer
and the layers below it, never one above. The entry points (GraphQL API, HTTP
endpoints, outbox delivery, middleware) do not import each other, and only
the data layer and the services write SQL.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import careforall

PACKAGE = Path(careforall.__file__).resolve().parent

# Inner first. A module belongs to the first layer naming it or a package
# above it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("domain", ("careforall.domain",)),
    (
        "base",
        (
            "careforall",  # __version__ only
            "careforall.settings",
            "careforall.tracing",
            "careforall.logs",
            "careforall.log_stream",
            "careforall.redaction",
            "careforall.metrics",
            "careforall.concurrency",
            "careforall.collector",
            "careforall.broadcaster",
            "careforall.signals",
            "careforall.ws_protocol",
            "careforall.http_protocol",
            "careforall.mail_config",
            "careforall.payment_config",
        ),
    ),
    (
        "data",
        (
            "careforall.models",
            "careforall.db",
            "careforall.sqlite",
            "careforall.direct",
            "careforall.session_versions",
            "careforall.backup",
            "careforall.media",
        ),
    ),
    ("payments", ("careforall.payments",)),
    ("mail", ("careforall.mail",)),
    ("services", ("careforall.services",)),
    ("runtime", ("careforall.runtime",)),
    (
        "entry points",
        (
            "careforall.api",
            "careforall.endpoints",
            "careforall.outbox",
            "careforall.middleware",
            "careforall.maintenance",
        ),
    ),
    ("composition", ("careforall.app", "careforall.cli", "careforall.__main__")),
]
# Siblings in one layer that may not import each other.
SEPARATE = {
    "entry points": (
        "careforall.api",
        "careforall.endpoints",
        "careforall.outbox",
        "careforall.middleware",
        "careforall.maintenance",
    )
}
# What the domain may import from outside the standard library.
DOMAIN_THIRD_PARTY = {"transitions"}
# Outside the data layer and the services, SQLAlchemy and SQLModel may be
# imported for their types and errors, never to build a statement.
STATEMENT_BUILDERS = {
    "select",
    "insert",
    "update",
    "delete",
    "text",
    "func",
    "bindparam",
    "col",
    "literal",
    "exists",
    "and_",
    "or_",
}
WRITES_SQL = {"data", "services", "payments"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, ast.Module]:
    return {
        module_name(path): ast.parse(path.read_text(), filename=str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.relative_to(PACKAGE).parts
    }


def layer_of(module: str) -> int:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if prefix == "careforall" and module != "careforall":
                    continue
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return best[1]


def imports(tree: ast.Module) -> list[tuple[str, set[str], int]]:
    """(module imported, names taken from it, line) for every import, also
    those inside functions (a deferred import is still a dependency)."""
    found: list[tuple[str, set[str], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((a.name, set(), node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = {a.name for a in node.names}
            found.append((node.module, names, node.lineno))
            # `from careforall import metrics` imports a module.
            found.extend((f"{node.module}.{n}", set(), node.lineno) for n in names)
    return found


def is_module(name: str, known: dict[str, ast.Module]) -> bool:
    return name in known


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_imports_point_inward() -> None:
    known = modules()
    wrong = []
    for module, tree in known.items():
        own = layer_of(module)
        for target, _names, line in imports(tree):
            if not target.startswith("careforall") or not is_module(target, known):
                continue
            if layer_of(target) > own:
                wrong.append(
                    f"{module}:{line} ({LAYERS[own][0]}) imports {target} "
                    f"({LAYERS[layer_of(target)][0]})"
                )
    assert wrong == []


def _sibling(module: str, siblings: tuple[str, ...]) -> str | None:
    for prefix in siblings:
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return None


def test_entry_points_do_not_import_each_other() -> None:
    known = modules()
    wrong = []
    for siblings in SEPARATE.values():
        for module, tree in known.items():
            home = _sibling(module, siblings)
            if home is None:
                continue
            for target, _names, line in imports(tree):
                other = _sibling(target, siblings)
                if other is not None and other != home and is_module(target, known):
                    wrong.append(f"{module}:{line} imports {target}")
    assert wrong == []


def test_the_domain_imports_only_the_standard_library_and_transitions() -> None:
    import sys

    wrong = []
    for module, tree in modules().items():
        if layer_of(module) != 0:
            continue
        for target, _names, line in imports(tree):
            top = target.split(".")[0]
            if top in ("careforall", "__future__") or top in sys.stdlib_module_names:
                continue
            if top not in DOMAIN_THIRD_PARTY:
                wrong.append(f"{module}:{line} imports {target}")
    assert wrong == []


def test_only_the_data_layer_and_the_services_build_sql() -> None:
    layer_names = [name for name, _ in LAYERS]
    wrong = []
    for module, tree in modules().items():
        if layer_names[layer_of(module)] in WRITES_SQL:
            continue
        for target, names, line in imports(tree):
            if target.split(".")[0] not in ("sqlalchemy", "sqlmodel"):
                continue
            if built := sorted(names & STATEMENT_BUILDERS):
                wrong.append(f"{module}:{line} imports {', '.join(built)}")
    assert wrong == []


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("careforall.domain.states", "domain"),
        ("careforall.services.outbox", "services"),
        ("careforall.api.schema", "entry points"),
        ("careforall", "base"),
        ("careforall.app", "composition"),
    ],
)
def test_the_layer_map_places_modules_by_their_longest_prefix(
    module: str, layer: str
) -> None:
    assert LAYERS[layer_of(module)][0] == layer


def test_a_wrong_import_is_caught() -> None:
    # The check itself can fail: a domain module importing a service would be.
    tree = ast.parse("from careforall.services.pledges import create_pledge\n")
    (target, _names, _line), *_ = imports(tree)
    assert layer_of(target) > layer_of("careforall.domain.states")


def test_every_library_imported_is_a_declared_dependency() -> None:
    """An import that works only because another package pulls its library
    in breaks when that package changes its own dependencies."""
    import sys
    import tomllib
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    declared = {
        Requirement(r).name.lower().replace("_", "-")
        for r in pyproject["project"]["dependencies"]
    }
    providers = packages_distributions()
    missing = []
    for module, tree in modules().items():
        for target, _names, line in imports(tree):
            top = target.split(".")[0]
            if top in ("careforall", "__future__", "_typeshed"):
                continue
            if top in sys.stdlib_module_names:
                continue
            names = {d.lower().replace("_", "-") for d in providers.get(top, [])}
            if not names & declared:
                missing.append(f"{module}:{line} imports {top} ({sorted(names)})")
    assert missing == []

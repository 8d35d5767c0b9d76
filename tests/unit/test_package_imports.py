"""Which of our packages import which: no cycle, and ``oauth/`` knows only errors and security.

Read from the source with ``ast`` (nothing is imported), so a new import breaks the test
at once. Why ``oauth/`` is a subpackage and not a top-level package:
docs/architecture.md, "The tree".
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Our top-level packages (pyproject.toml ``[tool.setuptools.packages.find]``).
TOP_LEVEL = ("email_service", "providers", "migrations")
OAUTH = ROOT / "email_service" / "oauth"
#: What ``email_service.oauth`` may import of ours: the error tree its failures are
#: translated into, the SSRF guard its token requests connect through, and itself.
OAUTH_MAY_IMPORT = ("email_service.errors", "email_service.security", "email_service.oauth")
#: The service's own state and types, which ``oauth/`` must be given as plain values.
OAUTH_MUST_NOT_IMPORT = (
    "email_service.store",
    "email_service.settings",
    "email_service.metrics",
    "email_service.model",
)


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def imported(path: Path) -> Iterator[str]:
    """Every name ``path`` imports, in full (``a.b.c`` for ``from a.b import c``), at any
    depth (function-level imports too), relative imports resolved."""
    package = path.relative_to(ROOT).parent.parts
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, *([node.module] if node.module else [])))
            yield from (f"{module}.{alias.name}" for alias in node.names)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("path", modules(OAUTH), ids=lambda p: p.name)
def test_oauth_imports_nothing_of_ours_but_errors_and_security(path: Path) -> None:
    ours = [name for name in imported(path) if within(name, "email_service")]
    assert not [n for n in ours if any(within(n, bad) for bad in OAUTH_MUST_NOT_IMPORT)]
    assert all(any(within(n, allowed) for allowed in OAUTH_MAY_IMPORT) for n in ours), ours
    assert not [n for n in imported(path) if within(n, "providers")]


def test_no_module_imports_a_top_level_oauth_package() -> None:
    assert not (ROOT / "oauth").exists()
    folders = [ROOT / name for name in (*TOP_LEVEL, "tests", "bench")]
    offenders = [
        str(path.relative_to(ROOT))
        for folder in folders
        for path in modules(folder)
        if any(within(name, "oauth") for name in imported(path))
    ]
    assert offenders == []


def test_only_oauth_imports_authlib() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for path in modules(ROOT / "email_service") + modules(ROOT / "providers")
        if any(within(name, "authlib") for name in imported(path))
    }
    assert importers == {"email_service/oauth/client.py"}


def package_modules(package: str) -> list[Path]:
    """What importing ``package`` can load. ``migrations/env.py`` and ``versions/`` are
    Alembic's scripts, which ``alembic`` runs by path; the service only imports
    ``migrations`` to find that folder (``store.migrate``)."""
    if package == "migrations":
        return [ROOT / "migrations" / "__init__.py"]
    return modules(ROOT / package)


def test_top_level_packages_import_one_another_without_a_cycle() -> None:
    edges = {
        package: {
            other
            for path in package_modules(package)
            for name in imported(path)
            for other in TOP_LEVEL
            if other != package and within(name, other)
        }
        for package in TOP_LEVEL
    }
    assert edges["providers"] == set(), "providers/ imports nothing of ours"
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, f"import cycle: {' -> '.join((*path, package))}"
        if package not in done:
            for other in sorted(edges[package]):
                visit(other, (*path, package))
            done.add(package)

    for package in TOP_LEVEL:
        visit(package, ())


def test_no_test_module_imports_another_and_bench_imports_no_test() -> None:
    """Shared test code lives in helper modules (``tests/helpers.py``, ``tests/e2e/processes.py``,
    ``tests/integration/api_harness.py`` ...), never in a ``test_*`` module; ``bench/``
    imports nothing from ``tests/``."""
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(ROOT / "tests")
        for name in imported(path)
        if within(name, "tests") and any(part.startswith("test_") for part in name.split("."))
    ] + [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(ROOT / "bench")
        for name in imported(path)
        if within(name, "tests")
    ]
    assert offenders == []

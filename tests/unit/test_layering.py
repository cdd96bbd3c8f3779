"""Architecture rules: the core and the backends stay free of Django; the core free of psycopg."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import soniq

PACKAGE_DIR = Path(soniq.__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
DJANGO_FREE_PACKAGES = ("core", "backends", "worker", "scheduler")


def _python_files(*subpackages: str) -> list[Path]:
    files: list[Path] = []
    for name in subpackages:
        directory = PACKAGE_DIR / name
        if directory.is_dir():
            files.extend(sorted(directory.rglob("*.py")))
    return files


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every absolute import in the file, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path}:{line} imports {module}"
        for path in files
        for line, module in _imported_modules(path)
        if module.split(".")[0] in forbidden
    ]


def test_layered_packages_exist() -> None:
    assert _python_files("core"), "soniq/core has no Python files"
    assert _python_files("backends"), "soniq/backends has no Python files"


def test_import_detection_sees_plain_from_and_nested_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import django\n"
        "from django.db import connection\n"
        "import os, django.conf as conf\n"
        "def f():\n"
        "    from psycopg import sql\n"
        "from . import sibling\n",
        encoding="utf-8",
    )
    assert sorted(_imported_modules(sample)) == [
        (1, "django"),
        (2, "django.db"),
        (3, "django.conf"),
        (3, "os"),
        (5, "psycopg"),
    ]
    assert _violations([sample], ("django",)) != []


@pytest.mark.parametrize(
    "path",
    _python_files(*DJANGO_FREE_PACKAGES),
    ids=lambda p: str(p.relative_to(REPO_ROOT)),
)
def test_module_does_not_import_django(path: Path) -> None:
    assert _violations([path], ("django",)) == []


@pytest.mark.parametrize("path", _python_files("core"), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_core_module_does_not_import_psycopg(path: Path) -> None:
    assert _violations([path], ("psycopg", "psycopg_pool")) == []


# croniter (with dateutil, about 5 MiB) only once a cron expression is used, and sqlite3
# (about 2 MiB) only for a SQLite database: a PostgreSQL worker that serves no cron schedule
# loads neither.
@pytest.mark.parametrize("module", ["django", "psycopg", "psycopg_pool", "croniter", "sqlite3"])
def test_importing_soniq_does_not_import(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import soniq, sys; "
        f"assert {module!r} not in sys.modules, "
        f"sorted(m for m in sys.modules if m.split('.')[0] == {module!r})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_only_the_postgres_backend_imports_psycopg() -> None:
    postgres_dir = PACKAGE_DIR / "backends" / "postgres"
    outside = [path for path in PACKAGE_DIR.rglob("*.py") if postgres_dir not in path.parents]
    assert _violations(outside, ("psycopg", "psycopg_pool")) == []


def test_the_worker_is_handed_a_backend_and_imports_none() -> None:
    worker_files = _python_files("worker", "scheduler")
    imported = [
        f"{path}:{line} imports {module}"
        for path in worker_files
        for line, module in _imported_modules(path)
        if module.startswith("soniq.backends") and module != "soniq.backends.base"
    ]
    assert imported == []

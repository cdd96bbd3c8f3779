"""The docs name only what exists: every setting, environment variable, command, module path,
source file and admin page that the README and docs/ mention is checked against the code."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib import admin
from django.core.management import get_commands

from soniq.core.settings import FIELD_NAMES

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
TEXT = {page.relative_to(ROOT).as_posix(): page.read_text() for page in PAGES}

# Environment variables of the test suite and its tools, not settings.
TOOL_VARIABLES = {"TEST_DATABASE_URL", "TEST_DATABASE_NAME", "CHROMIUM"}
# `SONIQ_<KEY>` as a pattern in prose, not a name.
PLACEHOLDERS = {"KEY", "NAME"}


def _found(pattern: str) -> list[tuple[str, str]]:
    """(page, match) for every match of ``pattern`` (its first group) in the docs."""
    return sorted(
        {
            (page, match.group(1))
            for page, text in TEXT.items()
            for match in re.finditer(pattern, text)
        }
    )


def test_the_docs_are_found() -> None:
    assert "README.md" in TEXT and "docs/reference/settings.md" in TEXT


@pytest.mark.parametrize(("page", "name"), _found(r"\bSONIQ_([A-Z][A-Z0-9_]*[A-Z0-9])\b"))
def test_every_environment_variable_is_a_setting(page: str, name: str) -> None:
    if name in TOOL_VARIABLES | PLACEHOLDERS:
        return
    assert name.lower() in FIELD_NAMES, f"{page} names SONIQ_{name}, which is no setting"


def test_the_settings_table_lists_every_setting_and_nothing_else() -> None:
    table = TEXT["docs/reference/settings.md"]
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| `SONIQ_", table, flags=re.MULTILINE))
    assert rows == {name.upper() for name in FIELD_NAMES}


@pytest.mark.parametrize(("page", "command"), _found(r"manage\.py ([a-z_]+)"))
def test_every_management_command_exists(page: str, command: str) -> None:
    # shop_demo belongs to the testproject, whose apps the test settings install too.
    assert command in get_commands(), f"{page} names manage.py {command}"


@cache
def _cli_commands() -> set[str]:
    """The subcommands ``soniq --help`` lists (``{setup,worker,...}``)."""
    usage = subprocess.run(
        [sys.executable, "-m", "soniq.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    found = re.search(r"\{([a-z_,-]+)\}", usage)
    assert found, usage
    return set(found.group(1).split(","))


@pytest.mark.parametrize(("page", "command"), _found(r"`soniq ([a-z][a-z_-]*)(?=`| (?!\.\.\.))"))
def test_every_soniq_command_exists(page: str, command: str) -> None:
    assert command in _cli_commands(), f"{page} names `soniq {command}`"


def _permissions() -> set[str]:
    """``soniq.<codename>`` of every permission of soniq's models."""
    found = set()
    for model in apps.get_app_config("soniq").get_models():
        meta = model._meta
        found.update(f"soniq.{action}_{meta.model_name}" for action in meta.default_permissions)
        found.update(f"soniq.{codename}" for codename, _ in meta.permissions)
    return found


@cache
def _source() -> str:
    return "\n".join(path.read_text() for path in (ROOT / "soniq").rglob("*.py"))


@pytest.mark.parametrize(("page", "path"), _found(r"`(soniq(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`"))
def test_every_dotted_name_resolves(page: str, path: str) -> None:
    """A module or attribute; else a system check id, a permission, or a name the code
    writes itself (the ``error_type`` ``soniq.WorkerLost``)."""
    if re.fullmatch(r"soniq\.[EW]\d{3}", path) or path in _permissions():
        assert f'"{path}"' in _source() or path in _permissions(), f"{page} names {path}"
        return
    parts = path.split(".")
    if parts[:2] == ["soniq", "tasks"] and importlib.util.find_spec("django.tasks") is None:
        # The django.tasks backend imports only on Django 6: read its module's source instead.
        source = (ROOT / "soniq" / "tasks.py").read_text()
        for name in parts[2:3]:
            assert re.search(rf"^(class|def) {name}\b", source, re.MULTILINE), f"{page}: {path}"
        return
    for split in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                assert f"'{path}'" in _source(), f"{page} names {path}: no {attribute}"
                return
            found = getattr(found, attribute)
        return
    pytest.fail(f"{page} names {path}, which does not import")


@pytest.mark.parametrize(
    ("page", "path"), _found(r"`((?:soniq|tests|benchmarks|scripts|testproject)/[\w/.-]+)`")
)
def test_every_source_path_exists(page: str, path: str) -> None:
    if path.endswith(".sqlite3"):
        return  # a database the demo creates
    migration = re.fullmatch(r"soniq/(\d{4}_\w+)", path)  # a migration's label
    if migration:
        path = f"soniq/migrations/{migration.group(1)}.py"
    assert (ROOT / path).exists(), f"{page} names {path}"


@pytest.mark.parametrize(("page", "model"), _found(r"/admin/soniq/([a-z_]+)/"))
def test_every_admin_page_is_registered(page: str, model: str) -> None:
    registered = {m._meta.model_name for m in admin.site._registry if m._meta.app_label == "soniq"}
    assert model in registered, f"{page} names /admin/soniq/{model}/"

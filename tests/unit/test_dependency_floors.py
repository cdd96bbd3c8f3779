"""The dependency floors in pyproject.toml exclude releases with published security fixes
outstanding, and the environment the tests run in honours them."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

# Django 5.2.6, 5.2.8 and 5.2.9 fix published advisories (SQL injection among them).
INSECURE_DJANGO = ("5.2", "5.2.5", "5.2.8")


def _requirement(name: str) -> Requirement:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    [found] = [Requirement(d) for d in dependencies if Requirement(d).name.lower() == name]
    return found


def test_the_django_floor_is_5_2_9() -> None:
    django = _requirement("django")
    for release in INSECURE_DJANGO:
        assert not django.specifier.contains(release), release
    assert django.specifier.contains("5.2.9")
    assert django.specifier.contains("6.0")


def test_the_installed_django_meets_the_floor() -> None:
    assert Version(version("django")) >= Version("5.2.9")

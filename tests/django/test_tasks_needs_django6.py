"""On Django 5.2, which has no ``django.tasks``, soniq's backend says what it needs."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import django
import pytest
from django.core.exceptions import ImproperlyConfigured

from soniq import django_worker

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("django.tasks") is not None, reason="this Django has django.tasks"
)


def test_importing_the_backend_names_the_django_version_it_needs() -> None:
    sys.modules.pop("soniq.tasks", None)
    with pytest.raises(ImproperlyConfigured) as raised:
        importlib.import_module("soniq.tasks")
    message = str(raised.value)
    assert isinstance(raised.value, ImportError)  # for code importing it optionally
    assert "needs Django 6.0 or newer" in message
    assert django.get_version() in message
    assert "@app.job()" in message
    assert "soniq.tasks" not in sys.modules


def test_the_worker_does_not_look_for_tasks_modules() -> None:
    assert not django_worker.has_task_framework()
    # No tasks module is imported (soniq's own soniq.tasks would fail here).
    django_worker.discover(())
    assert "soniq.tasks" not in sys.modules

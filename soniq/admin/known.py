"""Queue and task names known to this process: the filters' choices, with no table scan."""

from __future__ import annotations

import logging
from functools import cache

from soniq.admin.common import soniq_settings

logger = logging.getLogger("soniq.admin")


@cache
def _discover() -> None:
    """Import the jobs modules once, as the worker does, so the filters know every job."""
    from soniq import django_worker
    from soniq.core.errors import ConfigurationError

    try:
        django_worker.discover(soniq_settings().jobs_modules)
    except (ConfigurationError, ImportError):
        logger.exception("soniq admin: the jobs modules could not all be imported")


def task_names() -> list[str]:
    from soniq.app import instances

    _discover()
    names = {name for app in list(instances) for name in app.registry.names()}
    return sorted(names | set(_django_task_names()))


def _django_task_names() -> list[str]:
    """The ``django.tasks`` tasks on a soniq backend: their jobs carry the task's path."""
    from soniq import django_worker

    if not django_worker.has_task_framework():
        return []
    from soniq.tasks import known_tasks

    return [task.module_path for task in known_tasks()]


def queue_names() -> list[str]:
    from soniq.app import instances

    _discover()
    names = {"default", *(soniq_settings().queues or ())}
    for app in list(instances):
        names.update(spec.queue for spec in app.registry)
    return sorted(names)

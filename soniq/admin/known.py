"""Queue and task names known to this process: the filters' choices, with no table scan."""

from __future__ import annotations

import logging
from functools import cache

from soniq.admin.common import soniq_settings

logger = logging.getLogger("soniq.admin")


@cache
def _discover() -> None:
    """Import the jobs modules once, as the worker does, so the filters know every job."""
    from django.utils.module_loading import autodiscover_modules

    from soniq import _discovery
    from soniq.core.errors import ConfigurationError

    try:
        autodiscover_modules("jobs")
        _discovery.import_modules(soniq_settings().jobs_modules)
    except (ConfigurationError, ImportError):
        logger.exception("soniq admin: the jobs modules could not all be imported")


def task_names() -> list[str]:
    from soniq.app import instances

    _discover()
    return sorted({name for app in list(instances) for name in app.registry.names()})


def queue_names() -> list[str]:
    from soniq.app import instances

    _discover()
    names = {"default", *(soniq_settings().queues or ())}
    for app in list(instances):
        names.update(spec.queue for spec in app.registry)
    return sorted(names)

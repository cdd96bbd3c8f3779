"""How the Django-free parts learn whether they run inside a configured Django project.

Nothing here imports Django: a project that never imported ``django.conf`` is not a Django
project as far as soniq is concerned, and importing soniq must not configure Django.
"""

from __future__ import annotations

import sys
from typing import Any

# Set by the standalone ``soniq`` command when it configured Django itself, on its database
# and with no app but soniq, only to read soniq's tables through the ORM (its migrations, the
# shared commands, a worker's queue gauges). The jobs of such a process are not a Django
# project's: a worker there needs neither Django's connection hygiene nor its signals.
configured_for_soniq_only = False


def django_is_configured() -> bool:
    conf = sys.modules.get("django.conf")
    return bool(conf is not None and conf.settings.configured)


def django_project() -> bool:
    """Whether this process runs inside a Django project: Django is configured, and not only
    by the standalone ``soniq`` command for soniq's own tables."""
    return not configured_for_soniq_only and django_is_configured()


def django_soniq_settings() -> Any:
    """The ``SONIQ`` dict of Django's settings (``None`` when absent or outside Django)."""
    if not django_is_configured():
        return None
    return getattr(sys.modules["django.conf"].settings, "SONIQ", None)

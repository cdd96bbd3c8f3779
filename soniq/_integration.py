"""How the Django-free parts learn whether they run inside a configured Django project.

Nothing here imports Django: a project that never imported ``django.conf`` is not a Django
project as far as soniq is concerned, and importing soniq must not configure Django.
"""

from __future__ import annotations

import sys
from typing import Any


def django_is_configured() -> bool:
    conf = sys.modules.get("django.conf")
    return bool(conf is not None and conf.settings.configured)


def django_soniq_settings() -> Any:
    """The ``SONIQ`` dict of Django's settings (``None`` when absent or outside Django)."""
    if not django_is_configured():
        return None
    return getattr(sys.modules["django.conf"].settings, "SONIQ", None)

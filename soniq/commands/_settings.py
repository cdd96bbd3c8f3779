"""The settings a command runs with: ``SONIQ`` merged over the ``SONIQ_*`` environment."""

from __future__ import annotations

from django.conf import settings

from soniq.core.settings import SoniqSettings, build_settings


def soniq_settings() -> SoniqSettings:
    return build_settings(django_values=getattr(settings, "SONIQ", None))

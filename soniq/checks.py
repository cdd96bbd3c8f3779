"""Django system checks for soniq's configuration. Ids are stable: soniq.E001 ..."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import connections

from soniq.core.errors import ConfigurationError
from soniq.core.settings import build_settings
from soniq.django_backend import SUPPORTED_VENDORS


@register(Tags.compatibility, Tags.database)
def check_soniq_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    raw = getattr(settings, "SONIQ", None)
    if raw is not None and not isinstance(raw, Mapping):
        return [
            Error(
                f"settings.SONIQ must be a dict, got {type(raw).__name__}.",
                hint='Write SONIQ = {"DATABASE": "default", ...}.',
                id="soniq.E001",
            )
        ]
    try:
        soniq_settings = build_settings(django_values=raw)
    except ConfigurationError as exc:
        return [
            Error(
                str(exc),
                hint="Fix the named key in settings.SONIQ or the SONIQ_* environment variable.",
                id="soniq.E001",
            )
        ]
    alias = soniq_settings.database
    if alias not in connections.settings:
        messages.append(
            Error(
                f"SONIQ['DATABASE'] is {alias!r}, which is not a key of settings.DATABASES.",
                hint=f"Use one of: {', '.join(connections.settings)}.",
                id="soniq.E002",
            )
        )
    else:
        if connections[alias].vendor not in SUPPORTED_VENDORS:
            messages.append(
                Error(
                    f"soniq stores jobs in PostgreSQL or SQLite; database {alias!r} uses "
                    f"{connections.settings[alias]['ENGINE']}.",
                    hint="Point SONIQ['DATABASE'] at a PostgreSQL or SQLite alias.",
                    id="soniq.E003",
                )
            )
    if soniq_settings.database_url and soniq_settings.database_url.startswith("sqlite"):
        messages.append(
            Error(
                "SONIQ DATABASE_URL points at a SQLite file: jobs would go through a connection "
                "of their own, outside Django's transactions and its configured databases.",
                hint="Remove SONIQ['DATABASE_URL'] / SONIQ_DATABASE_URL and set "
                "SONIQ['DATABASE'] to the SQLite alias.",
                id="soniq.E004",
            )
        )
    elif soniq_settings.database_url:
        messages.append(
            Warning(
                "SONIQ DATABASE_URL is set inside a Django project: enqueues go through a "
                "connection of their own and do not join transaction.atomic() blocks.",
                hint="Remove SONIQ['DATABASE_URL'] / SONIQ_DATABASE_URL and use "
                "SONIQ['DATABASE'] to pick a Django database alias.",
                id="soniq.W001",
            )
        )
    if not settings.USE_TZ:
        messages.append(
            Warning(
                "USE_TZ is False: soniq stores times in UTC and the admin would show them as "
                "local times.",
                hint="Set USE_TZ = True (Django's default).",
                id="soniq.W002",
            )
        )
    return messages

"""``manage.py soniq_scheduler``: fire the project's recurring jobs."""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import autodiscover_modules

from soniq import _discovery, _worker_cli
from soniq.core.errors import ConfigurationError, SchemaMissingError
from soniq.core.settings import build_settings


class Command(BaseCommand):
    help = "Run a soniq scheduler: enqueues the jobs of due schedules until SIGTERM/SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--app", default=None, help="The Soniq app as 'module:attribute'.")
        parser.add_argument(
            "--tick", type=float, default=1.0, help="Seconds between looks at the schedules."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        _worker_cli.configure_logging(options["verbosity"])
        if options["tick"] <= 0:
            raise CommandError("--tick must be positive")
        try:
            soniq_settings = build_settings(django_values=getattr(settings, "SONIQ", None))
            autodiscover_modules("jobs")
            _discovery.import_modules(soniq_settings.jobs_modules)
            app = _discovery.choose_app(options["app"] or soniq_settings.app)
            app.scheduler.backend()  # a database that cannot store schedules fails here
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        try:
            asyncio.run(app.run_scheduler(tick=options["tick"]))
        except SchemaMissingError as exc:
            raise CommandError(str(exc)) from exc

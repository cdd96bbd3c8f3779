"""``manage.py soniq_worker``: run a worker for the project's jobs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from soniq import _worker_cli, django_worker
from soniq.core.errors import ConfigurationError, SchemaMissingError
from soniq.core.settings import build_settings


class Command(BaseCommand):
    help = "Run a soniq worker: claims due jobs and runs them until SIGTERM/SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        _worker_cli.add_worker_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        _worker_cli.configure_logging(options["verbosity"])
        try:
            soniq_settings = build_settings(django_values=getattr(settings, "SONIQ", None))
            # Every installed app's jobs (and tasks) module, then those named in JOBS_MODULES.
            django_worker.discover(soniq_settings.jobs_modules)
            app = django_worker.project_app(options["app"] or soniq_settings.app)
            # Build the worker's backend now so a bad database alias fails before anything runs.
            app.worker_backend(options["concurrency"] or soniq_settings.concurrency)
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        try:
            _worker_cli.run(
                app,
                options["concurrency"],
                options["queues"],
                options["run_once"],
                options["metrics_port"],
            )
        except (SchemaMissingError, ConfigurationError) as exc:
            raise CommandError(str(exc)) from exc

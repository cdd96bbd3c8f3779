"""What the worker needs from Django: a psycopg connection to soniq's alias, ORM hygiene
around sync jobs, and the job signals."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections
from django.dispatch import Signal
from django.utils.module_loading import autodiscover_modules

from soniq import _discovery, signals
from soniq.backends.postgres.conninfo import build_conninfo
from soniq.core.errors import ConfigurationError

if TYPE_CHECKING:
    from soniq.app import Soniq
    from soniq.backends.postgres import PostgresBackend
    from soniq.backends.sqlite.backend import SQLiteBackend
    from soniq.core.settings import SoniqSettings


def has_task_framework() -> bool:
    """Whether this Django has its task framework, ``django.tasks`` (Django 6.0 and newer)."""
    return importlib.util.find_spec("django.tasks") is not None


def discover(jobs_modules: Iterable[str]) -> None:
    """Import what a worker serves: every installed app's ``jobs`` module, its ``tasks``
    module too where ``django.tasks`` exists (Django's convention), then ``JOBS_MODULES``."""
    autodiscover_modules("jobs")
    if has_task_framework():
        autodiscover_modules("tasks")
    _discovery.import_modules(jobs_modules)


def project_app(path: str | None) -> Soniq:
    """The app a worker (or ``soniq.testing.drain``) runs, serving every ``django.tasks`` task
    on a soniq backend that this process imported."""
    if has_task_framework():
        from soniq.tasks import worker_app

        return worker_app(path)
    return _discovery.choose_app(path)


def serve_tasks(app: Soniq) -> None:
    """Register the ``django.tasks`` tasks this process imported on ``app``."""
    if has_task_framework():
        from soniq.tasks import install

        install(app)


def postgres_conninfo(alias: str) -> str:
    """A psycopg conninfo for the PostgreSQL database behind a Django alias."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        raise ConfigurationError(
            f"the worker runs on PostgreSQL or SQLite; database alias {alias!r} is "
            f"{connection.vendor}"
        )
    settings = connection.settings_dict
    options = {
        key: value
        for key, value in settings.get("OPTIONS", {}).items()
        if key not in ("pool", "server_side_binding", "isolation_level", "assume_role")
    }
    return build_conninfo(
        dbname=settings.get("NAME"),
        user=settings.get("USER"),
        password=settings.get("PASSWORD"),
        host=settings.get("HOST"),
        port=settings.get("PORT"),
        **options,
    )


def worker_backend(
    alias: str, concurrency: int, settings: SoniqSettings
) -> PostgresBackend | SQLiteBackend:
    if connections[alias].vendor == "sqlite":
        from soniq.backends.sqlite.backend import SQLiteBackend

        return SQLiteBackend(str(connections[alias].settings_dict["NAME"]), settings=settings)
    from soniq.backends.postgres import PostgresBackend

    # The claim, the completion writer and the heartbeat each hold a connection briefly.
    return PostgresBackend(
        postgres_conninfo(alias),
        min_size=2,
        max_size=concurrency + 4,
        prepared_statements=settings.prepared_statements,
        settings=settings,
    )


def with_fresh_connections(call: Callable[[], Any]) -> Callable[[], Any]:
    """Run a sync job like Django runs a request: drop unusable connections before and after."""

    def wrapped() -> Any:
        close_old_connections()
        try:
            return call()
        finally:
            close_old_connections()

    return wrapped


def _sender(app: Any, signal: Signal, **extra: str) -> Callable[..., Any]:
    async def send(context: Any, value: Any = None) -> None:
        # No thread hop at all when nobody listens (the common case, on the hot path).
        if signal.has_listeners():
            named = {name: value for name in extra.values()}
            await sync_to_async(signal.send)(sender=app, context=context, **named)

    return send


def signal_hooks(app: Any) -> dict[str, list[Callable[..., Any]]]:
    return {
        "before_job": [_sender(app, signals.job_started)],
        "after_job": [_sender(app, signals.job_succeeded, value="result")],
        "on_error": [_sender(app, signals.job_failed, value="exception")],
    }

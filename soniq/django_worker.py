"""What the worker needs from Django: a psycopg connection to soniq's alias, ORM hygiene
around sync jobs, and the job signals."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections
from django.dispatch import Signal

from soniq import signals
from soniq.backends.postgres.conninfo import build_conninfo
from soniq.core.errors import ConfigurationError

if TYPE_CHECKING:
    from soniq.backends.postgres import PostgresBackend
    from soniq.backends.sqlite.backend import SQLiteBackend
    from soniq.core.settings import SoniqSettings


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

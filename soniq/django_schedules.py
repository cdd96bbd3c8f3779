"""Schedules read and changed on Django's connection, for the admin.

The scheduler's own statements run here on Django's cursor instead of a psycopg pool, so an
admin action joins the request's transaction and a test's ``TestCase`` transaction, exactly
as an enqueue does. :class:`soniq.schedule_service.SchedulerService` drives it, so pause,
resume and run-now mean the same in the admin and in ``app.scheduler``.
"""

from __future__ import annotations

from datetime import datetime

from asgiref.sync import sync_to_async
from django.db import connections

from soniq.backends.base import Row, Statement
from soniq.backends.postgres import scheduler_statements as ss
from soniq.backends.postgres.scheduler_ops import decode_schedule
from soniq.core.errors import ConfigurationError
from soniq.core.periodic import Schedule
from soniq.django_backend import django_executor


class DjangoScheduleStore:
    """The part of :class:`soniq.backends.base.SchedulerBackend` that reads and changes one
    schedule; firing stays with the scheduler process."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def _fetch_sync(self, statement: Statement) -> list[Row]:
        connection = connections[self.alias]
        if connection.vendor != "postgresql":
            raise ConfigurationError(
                f"schedules are stored on PostgreSQL only; database alias {self.alias!r} is "
                f"{connection.vendor}"
            )
        return django_executor(connection)(statement)

    async def _fetch(self, statement: Statement) -> list[Row]:
        rows: list[Row] = await sync_to_async(self._fetch_sync)(statement)
        return rows

    async def get_schedule(self, name: str) -> Schedule | None:
        rows = await self._fetch(ss.select_schedule(name))
        return decode_schedule(rows[0]) if rows else None

    async def list_schedules(self, status: str | None = None) -> list[Schedule]:
        return [decode_schedule(row) for row in await self._fetch(ss.list_schedules(status))]

    async def set_schedule_status(
        self, name: str, status: str, next_fire_at: datetime | None = None
    ) -> bool:
        return bool(await self._fetch(ss.set_status(name, status, next_fire_at)))

    async def delete_schedule(self, name: str) -> bool:
        return bool(await self._fetch(ss.delete_schedule(name)))

    async def close(self) -> None:
        """Django owns the connection."""

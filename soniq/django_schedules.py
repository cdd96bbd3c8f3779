"""Schedules read and changed on Django's connection, for the admin and the commands.

The scheduler's own statements (PostgreSQL's or SQLite's, by the alias's vendor) run here on
Django's cursor instead of soniq's own connections, so an admin action joins the request's
transaction and a test's ``TestCase`` transaction, exactly as an enqueue does.
:class:`soniq.schedule_service.SchedulerService` drives it, so pause,
resume and run-now mean the same in the admin and in ``app.scheduler``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.db import connections

from soniq.backends.base import Row, Statement
from soniq.backends.postgres import scheduler_statements as ss
from soniq.backends.rows import decode_schedule
from soniq.backends.sqlite import scheduler_statements as sqlite_ss
from soniq.core.errors import ConfigurationError
from soniq.core.periodic import Schedule
from soniq.django_backend import DjangoBackend, django_executor

if TYPE_CHECKING:
    from soniq.app import Soniq
    from soniq.schedule_service import SchedulerService


def scheduler_service(alias: str, app: Soniq | None = None) -> SchedulerService:
    """``app.scheduler``'s logic on Django's connection to ``alias``. ``app`` builds the job of
    a run-now (the app that registered the task: its retries and timeout); pausing, resuming
    and reading need none."""
    from soniq.app import Soniq
    from soniq.schedule_service import SchedulerService

    owner = app if app is not None else Soniq(database=alias)
    return SchedulerService(owner, DjangoScheduleStore(alias), DjangoBackend(alias))


class DjangoScheduleStore:
    """The part of :class:`soniq.backends.base.SchedulerBackend` that reads and changes one
    schedule; firing stays with the scheduler process."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def _sqlite(self) -> bool:
        vendor = connections[self.alias].vendor
        if vendor not in ("postgresql", "sqlite"):
            raise ConfigurationError(
                f"schedules are stored on PostgreSQL or SQLite; database alias {self.alias!r} "
                f"is {vendor}"
            )
        return vendor == "sqlite"

    def _fetch_sync(self, statement: Statement) -> list[Row]:
        return django_executor(connections[self.alias], qmark=self._sqlite)(statement)

    async def _fetch(self, statement: Statement) -> list[Row]:
        rows: list[Row] = await sync_to_async(self._fetch_sync)(statement)
        return rows

    async def get_schedule(self, name: str) -> Schedule | None:
        statements = sqlite_ss if self._sqlite else ss
        rows = await self._fetch(statements.select_schedule(name))
        return decode_schedule(rows[0]) if rows else None

    async def list_schedules(self, status: str | None = None) -> list[Schedule]:
        statements = sqlite_ss if self._sqlite else ss
        return [
            decode_schedule(row) for row in await self._fetch(statements.list_schedules(status))
        ]

    async def set_schedule_status(
        self, name: str, status: str, next_fire_at: datetime | None = None
    ) -> bool:
        if self._sqlite:
            statement = sqlite_ss.set_status(name, status, next_fire_at, datetime.now(UTC))
        else:
            statement = ss.set_status(name, status, next_fire_at)
        return bool(await self._fetch(statement))

    async def delete_schedule(self, name: str) -> bool:
        statements = sqlite_ss if self._sqlite else ss
        return bool(await self._fetch(statements.delete_schedule(name)))

    async def close(self) -> None:
        """Django owns the connection."""

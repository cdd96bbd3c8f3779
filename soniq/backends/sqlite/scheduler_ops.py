"""The scheduler's storage operations on SQLite, mixed into :class:`SQLiteBackend`.

A tick is one short ``BEGIN IMMEDIATE`` transaction: it takes SQLite's write lock before it
looks for due schedules, so schedulers sharing the file tick one after another, and the next
one sees the schedules the previous one advanced. Inside it, each slot's fire is recorded
under the unique (schedule_name, fire_time) key of ``soniq_schedule_fires`` together with its
job, so a slot fires once however many schedulers run (the key holds even should the lock
ever not). A scheduler killed mid-tick loses its lock with its process and SQLite rolls its
transaction back; nothing is left half-fired.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from soniq.backends import plans
from soniq.backends.base import Row, Statement
from soniq.backends.fire_plan import Fired, FireStatements, MakeJob, fire_due
from soniq.backends.rows import decode_schedule, to_utc
from soniq.backends.sqlite import scheduler_statements as ss
from soniq.backends.sqlite.statements import SQLiteDialect
from soniq.core import wakeup
from soniq.core.periodic import Schedule, ScheduleDefinition

logger = logging.getLogger("soniq.scheduler")

T = TypeVar("T")
DEFAULT_LEASE = 5.0


def _fetch(connection: sqlite3.Connection, statement: Statement) -> list[Row]:
    return connection.execute(statement.sql, tuple(statement.params)).fetchall()


class SQLiteSchedulerOps:
    """Needs ``clock``, ``dialect``, ``_conn``, ``_read``, ``_write``, ``_run`` and
    ``_executor`` from :class:`SQLiteBackend`."""

    clock: Callable[[], datetime]
    dialect: SQLiteDialect

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError  # provided by SQLiteBackend

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # provided by SQLiteBackend

    def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # provided by SQLiteBackend

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError  # provided by SQLiteBackend

    @staticmethod
    def _executor(connection: sqlite3.Connection) -> plans.SyncExecute:
        raise NotImplementedError  # provided by SQLiteBackend

    # -- schedules, one at a time -----------------------------------------------------------

    async def _schedule_write(self, statement: Statement) -> list[Row]:
        return await self._run(self._write, lambda c: _fetch(c, statement))

    async def _schedule_read(self, statement: Statement) -> list[Row]:
        return await self._run(self._read, lambda c: _fetch(c, statement))

    async def upsert_schedule(
        self, definition: ScheduleDefinition, *, source: str, next_fire_at: datetime
    ) -> None:
        await self._schedule_write(
            ss.upsert_schedule(
                definition, source=source, next_fire_at=next_fire_at, now=self.clock()
            )
        )

    async def get_schedule(self, name: str) -> Schedule | None:
        rows = await self._schedule_read(ss.select_schedule(name))
        return decode_schedule(rows[0]) if rows else None

    async def list_schedules(self, status: str | None = None) -> list[Schedule]:
        rows = await self._schedule_read(ss.list_schedules(status))
        return [decode_schedule(row) for row in rows]

    async def set_schedule_status(
        self, name: str, status: str, next_fire_at: datetime | None = None
    ) -> bool:
        statement = ss.set_status(name, status, next_fire_at, self.clock())
        return bool(await self._schedule_write(statement))

    async def delete_schedule(self, name: str) -> bool:
        return bool(await self._schedule_write(ss.delete_schedule(name)))

    async def next_due_at(self) -> datetime | None:
        rows = await self._schedule_read(ss.next_due_at())
        return to_utc(rows[0][0]) if rows else None

    # -- firing -----------------------------------------------------------------------------

    async def fire_due_schedules(
        self,
        now: datetime,
        make_job: MakeJob,
        limit: int = 100,
        *,
        lease: float | None = None,
    ) -> list[Fired]:
        """Fire every due slot, each exactly once, in one ``BEGIN IMMEDIATE`` transaction.

        ``lease`` (the scheduler passes ``SCHEDULER_LEASE``) bounds the tick as far as SQLite
        allows: the tick waits at most that long for the write lock (another process holding
        it longer raises :class:`TimeoutError`, and the scheduler retries), and stops firing
        after half of it, committing what it fired. There is no server to end a hung tick:
        the lock goes when the process holding it ends."""
        lease = DEFAULT_LEASE if lease is None else lease
        fired, queues = await self._run(self._fire_tick, now, make_job, limit, lease)
        if queues:
            wakeup.notify(queues)  # a worker in this process runs the jobs at once
        return fired

    def _fire_tick(
        self, now: datetime, make_job: MakeJob, limit: int, lease: float
    ) -> tuple[list[Fired], set[str]]:
        connection = self._conn()
        with _busy_timeout(connection, lease):
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise
                raise TimeoutError(
                    f"another process held the database's write lock for the whole lease "
                    f"({lease:g}s)"
                ) from error
        plan = fire_due(self.dialect, self._fire_statements(), now, make_job, limit, lease)
        try:
            tick = plans.run_sync(plan, self._executor(connection))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return tick.fired, tick.queues

    def _fire_statements(self) -> FireStatements:
        return FireStatements(
            due=ss.due_schedules,
            # The time of the fire, from the backend's clock (SQLite has no clock_timestamp).
            record_fire=lambda name, slot, job_id: ss.record_fire(name, slot, job_id, self.clock()),
            point_fire_at=ss.point_fire_at,
            advance=ss.advance,
        )


@contextmanager
def _busy_timeout(connection: sqlite3.Connection, seconds: float) -> Iterator[None]:
    """``PRAGMA busy_timeout`` set to ``seconds`` for the block, then back as it was."""
    previous = int(connection.execute("PRAGMA busy_timeout").fetchone()[0])
    connection.execute(f"PRAGMA busy_timeout = {max(1, round(seconds * 1000))}")
    try:
        yield
    finally:
        connection.execute(f"PRAGMA busy_timeout = {previous}")

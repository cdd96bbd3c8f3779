"""The scheduler's storage operations on PostgreSQL, mixed into :class:`PostgresBackend`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from soniq.backends import plans
from soniq.backends.base import Row, Statement
from soniq.backends.fire_plan import Fired, FireStatements, MakeJob, fire_due
from soniq.backends.postgres import scheduler_statements as ss
from soniq.backends.postgres.conninfo import server_keepalives
from soniq.backends.postgres.executors import async_executor
from soniq.backends.postgres.pooling import is_connection_error, schema_error, unavailable
from soniq.backends.postgres.statements import PostgresDialect
from soniq.backends.rows import decode_schedule, to_utc
from soniq.core.periodic import Schedule, ScheduleDefinition
from soniq.core.settings import SoniqSettings

logger = logging.getLogger("soniq.scheduler")

STATEMENTS = FireStatements(
    due=ss.lock_due_schedules,
    record_fire=ss.record_fire,
    point_fire_at=ss.point_fire_at,
    advance=ss.advance,
)
# The client gives up a tick this many leases after it began: slightly after the server has
# ended a hung tick (about one lease after its last statement).
CLIENT_DEADLINE_FACTOR = 1.2
# Seconds after that deadline at which the tick's task is cancelled, should the shut-down
# socket not have ended it.
BACKSTOP = 1.0
INTRANS, INERROR, IDLE = (
    TransactionStatus.INTRANS,
    TransactionStatus.INERROR,
    TransactionStatus.IDLE,
)


class PostgresSchedulerOps:
    """Needs ``settings``, ``_fetch`` and ``acquire`` from :class:`PostgresBackend`."""

    settings: SoniqSettings

    async def _fetch(self, statement: Statement) -> list[Row]:
        raise NotImplementedError  # provided by PostgresBackend

    def acquire(self) -> AbstractAsyncContextManager[AsyncConnection[Row]]:
        raise NotImplementedError  # provided by PostgresBackend

    async def upsert_schedule(
        self, definition: ScheduleDefinition, *, source: str, next_fire_at: datetime
    ) -> None:
        await self._fetch(ss.upsert_schedule(definition, source=source, next_fire_at=next_fire_at))

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

    async def next_due_at(self) -> datetime | None:
        rows = await self._fetch(ss.next_due_at())
        return to_utc(rows[0][0]) if rows else None

    async def fire_due_schedules(
        self,
        now: datetime,
        make_job: MakeJob,
        limit: int = 100,
        *,
        lease: float | None = None,
    ) -> list[Fired]:
        """Fire every due slot, each exactly once: the fire record and the job are written in
        one transaction, under a unique (schedule, slot) key. The transaction is bounded by
        ``lease`` (default ``SCHEDULER_LEASE``): see :meth:`_tick_transaction`. A tick that
        has fired for half its lease stops there and commits; the slots left stay due for the
        next tick, so a long catch-up never outgrows the lease."""
        lease = self.settings.scheduler_lease if lease is None else lease
        plan = fire_due(PostgresDialect(), STATEMENTS, now, make_job, limit, lease)
        async with self._tick_transaction(lease) as fetch:
            tick = await plans.run_async(plan, fetch)
        return tick.fired

    @asynccontextmanager
    async def _tick_transaction(self, lease: float) -> AsyncIterator[plans.AsyncExecute]:
        """A transaction on a pooled connection that cannot outlive ``lease`` by much, on
        either side of the connection.

        The server: ``BEGIN`` comes with ``SET LOCAL`` limits (:func:`ss.begin_tick`) and the
        server-side TCP keepalives, so a scheduler that hangs or is cut off mid-tick loses its
        session, and with it its row locks, about ``lease`` seconds after its last statement;
        another scheduler then fires the slots.

        The client: at ``lease`` x :data:`CLIENT_DEADLINE_FACTOR` the connection's socket is
        shut down, so whatever the tick waits for fails at once, and the tick raises
        :class:`TimeoutError`. (Cancelling the task instead would make psycopg send a cancel
        request and wait up to 10 s more for replies that may never come.) ``asyncio.timeout``
        backs that up. A connection that failed, or whose state is unknown, is closed before it
        goes back to the pool, which then replaces it; one whose transaction merely failed is
        rolled back and reused."""
        deadline = lease * CLIENT_DEADLINE_FACTOR
        async with self.acquire() as connection:
            expired = False

            def expire() -> None:
                nonlocal expired
                expired = True
                shut_down(connection)

            watchdog = asyncio.get_running_loop().call_later(deadline, expire)
            try:
                async with asyncio.timeout(deadline + BACKSTOP):
                    try:
                        await connection.execute(ss.begin_tick(lease), prepare=False)
                        fetch = async_executor(connection)
                        await fetch(server_keepalives(self.settings, local=True))
                        yield fetch
                        await connection.execute("COMMIT", prepare=False)
                    except Exception as error:
                        if expired or not await _rolled_back(connection):
                            await connection.close()
                        if not expired:
                            if isinstance(error, psycopg.OperationalError) and (
                                is_connection_error(error, connection)
                            ):
                                raise unavailable(error) from error
                            missing = schema_error(
                                error, connection, getattr(self, "django_alias", None)
                            )
                            if missing is not None:
                                raise missing from error
                            raise
                        raise TimeoutError from None  # reported just below
            except TimeoutError:
                await connection.close()
                raise TimeoutError(
                    f"the tick outlived its lease ({lease:g}s); its connection was discarded"
                ) from None
            except Exception:
                raise  # dealt with above
            except BaseException:  # cancelled from outside: the connection's state is unknown
                await connection.close()
                raise
            finally:
                watchdog.cancel()


async def _rolled_back(connection: AsyncConnection[Row]) -> bool:
    """Roll back after a failed statement; ``False`` if the connection is not usable."""
    if connection.closed or connection.info.transaction_status not in (INTRANS, INERROR):
        return False
    try:
        await connection.execute("ROLLBACK", prepare=False)
    except psycopg.Error:
        return False
    return connection.info.transaction_status == IDLE


def shut_down(connection: AsyncConnection[Row]) -> None:
    """Shut the connection's socket down (both ways) without closing its descriptor, which
    psycopg may be waiting on: the wait returns at once and the read or write fails, as if
    the server had closed the connection."""
    with (
        contextlib.suppress(Exception),  # already closed, say: nothing to wait on
        socket.socket(fileno=os.dup(connection.pgconn.socket)) as sock,
    ):
        sock.shutdown(socket.SHUT_RDWR)

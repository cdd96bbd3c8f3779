"""PostgreSQL storage through psycopg 3 connection pools, for code outside Django."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from soniq import _integration
from soniq.backends import plans
from soniq.backends.base import Row, Statement
from soniq.backends.operator_plans import KEY_RACE_ROUNDS, Action, SQLOperatorMixin
from soniq.backends.postgres.conninfo import network_options, parse_conninfo
from soniq.backends.postgres.executors import (
    async_executor,
    is_async_connection,
    is_sync_connection,
    refuse_connection,
    sync_executor,
)
from soniq.backends.postgres.pooling import checkout, checkout_async, reported
from soniq.backends.postgres.scheduler_ops import PostgresSchedulerOps
from soniq.backends.postgres.statements import PostgresDialect
from soniq.backends.postgres.worker_ops import PostgresWorkerOps
from soniq.core.errors import ConfigurationError
from soniq.core.operations import ActionResult
from soniq.core.records import JobInfo, NewJob
from soniq.core.settings import SoniqSettings

# Shown in pg_stat_activity, so operators can tell soniq's connections apart.
APPLICATION_NAME = "soniq"

# psycopg_pool retries a failed background connection attempt for this long, with back-off
# (1 s, 2 s, 4 s, ...). Zero: one quick retry, then the slot is given up and the pool grows again
# as soon as a caller waits, so the first caller after an outage connects at once instead of
# waiting for the next back-off step.
RECONNECT_TIMEOUT = 0.0


def checkout_timeout(settings: SoniqSettings, conninfo: str) -> float:
    """Seconds a caller waits for a pooled connection: the connection timeout (the URL's
    ``connect_timeout`` if it sets a positive one, else the ``CONNECT_TIMEOUT`` setting), the
    longest a connection attempt that succeeds may take."""
    given = parse_conninfo(conninfo).get("connect_timeout", "") if conninfo else ""
    seconds = int(given) if given.strip().isdigit() else 0
    return float(max(seconds if seconds > 0 else settings.connect_timeout, 2))


class PostgresBackend(PostgresWorkerOps, PostgresSchedulerOps, SQLOperatorMixin):
    """Pools are opened lazily, on first use: constructing the backend does no I/O.

    A connection that fails, or cannot be had within :attr:`checkout_timeout` seconds, makes
    the call raise :class:`~soniq.DatabaseUnavailableError` (chained to the psycopg error); a
    statement is never retried, since it may have been committed."""

    supports_listen = True
    supports_transactional_enqueue = True

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        prepared_statements: bool = True,
        settings: SoniqSettings | None = None,
    ) -> None:
        if not conninfo:
            raise ConfigurationError("PostgresBackend needs a database URL (DATABASE_URL)")
        self.conninfo = conninfo
        self.settings = settings if settings is not None else SoniqSettings()
        self.connection_options: dict[str, Any] = {
            "application_name": APPLICATION_NAME,
            **network_options(self.settings, conninfo),
        }
        # PgBouncer in transaction mode cannot keep prepared statements across transactions.
        if not prepared_statements:
            self.connection_options["prepare_threshold"] = None
        self.checkout_timeout = checkout_timeout(self.settings, conninfo)
        # The Django alias this database was configured through (a worker or scheduler of a
        # Django project: settings without DATABASE_URL), named when soniq's tables are missing.
        self.django_alias: str | None = (
            self.settings.database
            if settings is not None
            and not settings.database_url
            and _integration.django_is_configured()
            else None
        )
        self.dialect = PostgresDialect()
        self._min_size = min_size
        self._max_size = max_size
        self._pool: AsyncConnectionPool[AsyncConnection[Row]] | None = None
        self._open_lock: asyncio.Lock | None = None
        self._sync_pool: ConnectionPool[Connection[Row]] | None = None
        self._sync_lock = threading.Lock()

    def _pool_options(self, min_size: int) -> dict[str, Any]:
        # No check= on checkout: psycopg_pool sleeps after each failed check, and a round trip
        # per statement is too dear. checkout() looks at the socket instead (pooling.py).
        return {
            "min_size": min_size,
            "max_size": self._max_size,
            "open": False,
            "timeout": self.checkout_timeout,
            "reconnect_timeout": RECONNECT_TIMEOUT,
            "kwargs": {"autocommit": True, **self.connection_options},
        }

    async def _async_pool(self) -> AsyncConnectionPool[AsyncConnection[Row]]:
        # Opened without waiting: each caller waits for a connection within its own deadline
        # (checkout), so concurrent first calls to a database that is down all fail after
        # checkout_timeout, not one after the other.
        if self._pool is None:
            if self._open_lock is None:
                self._open_lock = asyncio.Lock()
            async with self._open_lock:  # concurrent first calls must not open two pools
                if self._pool is None:
                    pool: AsyncConnectionPool[AsyncConnection[Row]] = AsyncConnectionPool(
                        self.conninfo, name="soniq", **self._pool_options(self._min_size)
                    )
                    await pool.open()
                    self._pool = pool
        return self._pool

    def _sync_pool_opened(self) -> ConnectionPool[Connection[Row]]:
        with self._sync_lock:
            if self._sync_pool is None:
                pool: ConnectionPool[Connection[Row]] = ConnectionPool(
                    self.conninfo, name="soniq-sync", **self._pool_options(1)
                )
                pool.open()
                self._sync_pool = pool
            return self._sync_pool

    async def open(self) -> None:
        """Open the async pool and wait for a live connection: ``DatabaseUnavailableError``
        after :attr:`checkout_timeout` seconds if there is none."""
        async with self.acquire():
            pass

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[AsyncConnection[Row]]:
        """A live pooled connection in autocommit mode: open ``connection.transaction()`` for a
        transaction of your own (transactional enqueue). ``DatabaseUnavailableError`` if none
        can be had within :attr:`checkout_timeout` seconds."""
        pool = await self._async_pool()
        with reported():
            connection = await checkout_async(pool, self.checkout_timeout)
        try:
            async with connection:
                yield connection
        finally:
            await pool.putconn(connection)

    @contextmanager
    def acquire_sync(self) -> Iterator[Connection[Row]]:
        pool = self._sync_pool_opened()
        with reported():
            connection = checkout(pool, self.checkout_timeout)
        try:
            with connection:
                yield connection
        finally:
            pool.putconn(connection)

    @asynccontextmanager
    async def _connection(self, given: Any = None) -> AsyncIterator[AsyncConnection[Row]]:
        """``given`` (the caller's connection) or a pooled one; a connection failure inside
        the block is raised as ``DatabaseUnavailableError``."""
        if given is not None:
            if not is_async_connection(given):
                raise refuse_connection(given, accepted="a psycopg AsyncConnection")
            with reported(given, django_alias=self.django_alias):
                yield given
            return
        async with self.acquire() as pooled:
            with reported(pooled, django_alias=self.django_alias):
                yield pooled

    @contextmanager
    def _connection_sync(self, given: Any = None) -> Iterator[Connection[Row]]:
        if given is not None:
            if not is_sync_connection(given):
                raise refuse_connection(given, accepted="a psycopg Connection")
            with reported(given, django_alias=self.django_alias):
                yield given
            return
        with self.acquire_sync() as pooled, reported(pooled, django_alias=self.django_alias):
            yield pooled

    async def _execute_once(self, statement: Statement, given: Any = None) -> None:
        """Run one statement on ``given`` or on a pooled connection, its rows unread: what
        :meth:`_connection` does, inlined for the single enqueue."""
        if given is not None:
            if not is_async_connection(given):
                raise refuse_connection(given, accepted="a psycopg AsyncConnection")
            with reported(given, django_alias=self.django_alias):
                await given.execute(statement.sql, statement.params)
            return
        pool = self._pool or await self._async_pool()
        with reported():
            pooled = await checkout_async(pool, self.checkout_timeout)
        try:
            with reported(pooled, django_alias=self.django_alias):
                await pooled.execute(statement.sql, statement.params)
        finally:
            await pool.putconn(pooled)

    async def _fetch(self, statement: Statement) -> list[Row]:
        """One statement on a pooled autocommit connection."""
        async with self._connection() as connection:
            return await async_executor(connection)(statement)

    async def _execute_count(self, statement: Statement) -> int:
        async with self._connection() as connection:
            cursor = await connection.execute(statement.sql, statement.params)
            return cursor.rowcount

    async def _in_transaction(self, body: Any) -> Any:
        """Run ``await body(fetch)`` inside one transaction on one pooled connection."""
        async with self._connection() as connection, connection.transaction():
            return await body(async_executor(connection))

    async def insert_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[str]:
        if len(jobs) == 1 and not jobs[0].inserted_alone:
            # The common `await app.enqueue(...)`: one statement whose rows nobody reads, run
            # without a plan to drive or context managers to enter, about 40 µs less per call.
            [statement] = self.dialect.insert_jobs(jobs)
            await self._execute_once(statement, connection)
            return [str(jobs[0].id)]
        plan = plans.insert_jobs(self.dialect, jobs)
        async with self._connection(connection) as target:
            return await plans.run_async(plan, async_executor(target))

    async def insert_job_batches(
        self, batches: Iterable[Sequence[NewJob]], *, connection: Any = None
    ) -> list[str]:
        """Plain jobs (no dedup key) a batch at a time, in one transaction (a savepoint in
        the caller's), each batch's statement on its way while the next batch is built."""
        ids: list[str] = []
        async with self._connection(connection) as target, target.transaction():
            execute = async_executor(target)
            in_flight: asyncio.Task[list[Row]] | None = None
            try:
                for batch in batches:  # builds the batch, while in_flight runs on the server
                    if any(job.inserted_alone for job in batch):
                        raise ValueError(
                            "insert_job_batches takes jobs without a dedup key or a lock"
                        )
                    if in_flight is not None:
                        await in_flight
                    [statement] = self.dialect.insert_jobs(batch)
                    in_flight = asyncio.ensure_future(execute(statement))
                    # Let it send the statement before the next batch is built.
                    await asyncio.sleep(0)
                    ids.extend(str(job.id) for job in batch)
                if in_flight is not None:
                    await in_flight
            except BaseException:
                # A bad row (or a cancellation): the statement in flight must end before the
                # transaction rolls back on this connection.
                if in_flight is not None and not in_flight.done():
                    await asyncio.gather(in_flight, return_exceptions=True)
                raise
        return ids

    def insert_jobs_sync(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[str]:
        plan = plans.insert_jobs(self.dialect, jobs)
        with self._connection_sync(connection) as target:
            return plans.run_sync(plan, sync_executor(target))

    async def get_job(self, job_id: str) -> JobInfo | None:
        async with self._connection() as connection:
            return await plans.run_async(
                plans.get_job(self.dialect, job_id), async_executor(connection)
            )

    def get_job_sync(self, job_id: str) -> JobInfo | None:
        with self._connection_sync() as connection:
            return plans.run_sync(plans.get_job(self.dialect, job_id), sync_executor(connection))

    async def _operate(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        for round_ in range(KEY_RACE_ROUNDS):
            try:
                async with self._connection() as connection, connection.transaction():
                    plan = action(self.dialect, job_ids)
                    return await plans.run_async(plan, async_executor(connection))
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
                if round_ == KEY_RACE_ROUNDS - 1:
                    raise
        raise AssertionError("unreachable")

    def _operate_sync(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        for round_ in range(KEY_RACE_ROUNDS):
            try:
                with self._connection_sync() as connection, connection.transaction():
                    return plans.run_sync(action(self.dialect, job_ids), sync_executor(connection))
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
                if round_ == KEY_RACE_ROUNDS - 1:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        self._open_lock = None
        self.close_sync()

    def close_sync(self) -> None:
        with self._sync_lock:
            if self._sync_pool is not None:
                self._sync_pool.close()
                self._sync_pool = None

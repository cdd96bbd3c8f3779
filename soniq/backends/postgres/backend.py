"""PostgreSQL storage through psycopg 3 connection pools, for code outside Django."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from soniq.backends import plans
from soniq.backends.base import Row, Statement
from soniq.backends.operator_plans import KEY_RACE_ROUNDS, Action, SQLOperatorMixin
from soniq.backends.postgres.conninfo import network_options
from soniq.backends.postgres.executors import (
    async_executor,
    is_async_connection,
    is_sync_connection,
    refuse_connection,
    sync_executor,
)
from soniq.backends.postgres.scheduler_ops import PostgresSchedulerOps
from soniq.backends.postgres.statements import PostgresDialect
from soniq.backends.postgres.worker_ops import PostgresWorkerOps
from soniq.core.errors import ConfigurationError
from soniq.core.operations import ActionResult
from soniq.core.records import JobInfo, NewJob
from soniq.core.settings import SoniqSettings

# Shown in pg_stat_activity, so operators can tell soniq's connections apart.
APPLICATION_NAME = "soniq"


class PostgresBackend(PostgresWorkerOps, PostgresSchedulerOps, SQLOperatorMixin):
    """Pools are opened lazily, on first use: constructing the backend does no I/O."""

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
        self.dialect = PostgresDialect()
        self._min_size = min_size
        self._max_size = max_size
        self._pool: AsyncConnectionPool[AsyncConnection[Row]] | None = None
        self._sync_pool: ConnectionPool[Connection[Row]] | None = None
        self._sync_lock = threading.Lock()

    async def open(self) -> None:
        if self._pool is None:
            pool: AsyncConnectionPool[AsyncConnection[Row]] = AsyncConnectionPool(
                self.conninfo,
                min_size=self._min_size,
                max_size=self._max_size,
                open=False,
                # No check on checkout (a round trip on every statement); a statement that
                # finds its connection dead triggers a check of the whole pool instead.
                kwargs={"autocommit": True, **self.connection_options},
            )
            await pool.open(wait=True)
            self._pool = pool

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[AsyncConnection[Row]]:
        """A pooled connection in autocommit mode: open ``connection.transaction()`` for a
        transaction of your own (transactional enqueue)."""
        await self.open()
        assert self._pool is not None
        async with self._pool.connection() as connection:
            yield connection

    @contextmanager
    def acquire_sync(self) -> Iterator[Connection[Row]]:
        with self._sync_lock:
            if self._sync_pool is None:
                pool: ConnectionPool[Connection[Row]] = ConnectionPool(
                    self.conninfo,
                    min_size=1,
                    max_size=self._max_size,
                    open=False,
                    kwargs={"autocommit": True, **self.connection_options},
                )
                pool.open(wait=True)
                self._sync_pool = pool
        with self._sync_pool.connection() as connection:
            yield connection

    async def _fetch(self, statement: Statement) -> list[Row]:
        """One statement on a pooled autocommit connection."""
        async with self._checked(), self.acquire() as connection:
            return await async_executor(connection)(statement)

    async def _execute_count(self, statement: Statement) -> int:
        async with self._checked(), self.acquire() as connection:
            cursor = await connection.execute(statement.sql, statement.params)
            return cursor.rowcount

    async def _in_transaction(self, body: Any) -> Any:
        """Run ``await body(fetch)`` inside one transaction on one pooled connection."""
        async with self._checked(), self.acquire() as connection, connection.transaction():
            return await body(async_executor(connection))

    @asynccontextmanager
    async def _checked(self) -> AsyncIterator[None]:
        """On a connection failure, drop every dead idle connection (after a server restart
        they all are) so the caller's next attempt gets a live one; then re-raise."""
        try:
            yield
        except psycopg.OperationalError:
            if self._pool is not None:
                await self._pool.check()
            raise

    async def insert_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[str]:
        plan = plans.insert_jobs(self.dialect, jobs)
        if connection is not None:
            if not is_async_connection(connection):
                raise refuse_connection(connection, accepted="a psycopg AsyncConnection")
            return await plans.run_async(plan, async_executor(connection))
        async with self.acquire() as pooled:
            return await plans.run_async(plan, async_executor(pooled))

    def insert_jobs_sync(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[str]:
        plan = plans.insert_jobs(self.dialect, jobs)
        if connection is not None:
            if not is_sync_connection(connection):
                raise refuse_connection(connection, accepted="a psycopg Connection")
            return plans.run_sync(plan, sync_executor(connection))
        with self.acquire_sync() as pooled:
            return plans.run_sync(plan, sync_executor(pooled))

    async def get_job(self, job_id: str) -> JobInfo | None:
        async with self.acquire() as connection:
            return await plans.run_async(
                plans.get_job(self.dialect, job_id), async_executor(connection)
            )

    def get_job_sync(self, job_id: str) -> JobInfo | None:
        with self.acquire_sync() as connection:
            return plans.run_sync(plans.get_job(self.dialect, job_id), sync_executor(connection))

    async def _operate(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        for round_ in range(KEY_RACE_ROUNDS):
            try:
                async with (
                    self._checked(),
                    self.acquire() as connection,
                    connection.transaction(),
                ):
                    plan = action(self.dialect, job_ids)
                    return await plans.run_async(plan, async_executor(connection))
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
                if round_ == KEY_RACE_ROUNDS - 1:
                    raise
        raise AssertionError("unreachable")

    def _operate_sync(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        for round_ in range(KEY_RACE_ROUNDS):
            try:
                with self.acquire_sync() as connection, connection.transaction():
                    return plans.run_sync(action(self.dialect, job_ids), sync_executor(connection))
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
                if round_ == KEY_RACE_ROUNDS - 1:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        self.close_sync()

    def close_sync(self) -> None:
        with self._sync_lock:
            if self._sync_pool is not None:
                self._sync_pool.close()
                self._sync_pool = None

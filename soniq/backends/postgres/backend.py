"""PostgreSQL storage through psycopg 3 connection pools, for code outside Django."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from soniq.backends import plans
from soniq.backends.base import Row
from soniq.backends.postgres.executors import (
    async_executor,
    is_async_connection,
    is_sync_connection,
    refuse_connection,
    sync_executor,
)
from soniq.backends.postgres.statements import PostgresDialect
from soniq.core.errors import ConfigurationError
from soniq.core.records import JobInfo, NewJob


class PostgresBackend:
    """Pools are opened lazily, on first use: constructing the backend does no I/O."""

    supports_listen = True
    supports_transactional_enqueue = True

    def __init__(self, conninfo: str, *, min_size: int = 1, max_size: int = 10) -> None:
        if not conninfo:
            raise ConfigurationError("PostgresBackend needs a database URL (DATABASE_URL)")
        self.conninfo = conninfo
        self.dialect = PostgresDialect()
        self._min_size = min_size
        self._max_size = max_size
        self._pool: AsyncConnectionPool[AsyncConnection[Row]] | None = None
        self._sync_pool: ConnectionPool[Connection[Row]] | None = None
        self._sync_lock = threading.Lock()

    async def open(self) -> None:
        if self._pool is None:
            pool: AsyncConnectionPool[AsyncConnection[Row]] = AsyncConnectionPool(
                self.conninfo, min_size=self._min_size, max_size=self._max_size, open=False
            )
            await pool.open(wait=True)
            self._pool = pool

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[AsyncConnection[Row]]:
        """A pooled connection; its transaction commits when the block exits cleanly."""
        await self.open()
        assert self._pool is not None
        async with self._pool.connection() as connection:
            yield connection

    @contextmanager
    def acquire_sync(self) -> Iterator[Connection[Row]]:
        with self._sync_lock:
            if self._sync_pool is None:
                pool: ConnectionPool[Connection[Row]] = ConnectionPool(
                    self.conninfo, min_size=1, max_size=self._max_size, open=False
                )
                pool.open(wait=True)
                self._sync_pool = pool
        with self._sync_pool.connection() as connection:
            yield connection

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

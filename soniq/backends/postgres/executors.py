"""Run statements on psycopg connections, sync or async."""

from __future__ import annotations

from psycopg import AsyncConnection, Connection

from soniq.backends.base import Row, Statement
from soniq.backends.plans import AsyncExecute, SyncExecute


def sync_executor(connection: Connection[Row]) -> SyncExecute:
    def execute(statement: Statement) -> list[Row]:
        with connection.cursor() as cursor:
            cursor.execute(statement.sql, statement.params)
            return cursor.fetchall() if cursor.description else []

    return execute


def async_executor(connection: AsyncConnection[Row]) -> AsyncExecute:
    async def execute(statement: Statement) -> list[Row]:
        async with connection.cursor() as cursor:
            await cursor.execute(statement.sql, statement.params)
            return await cursor.fetchall() if cursor.description else []

    return execute

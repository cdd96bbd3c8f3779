"""Run statements on psycopg connections, sync or async."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, Connection

from soniq.backends.base import Row, Statement
from soniq.backends.plans import AsyncExecute, SyncExecute
from soniq.core.errors import InvalidConnectionError


def is_sync_connection(candidate: Any) -> bool:
    return isinstance(candidate, Connection)


def is_async_connection(candidate: Any) -> bool:
    return isinstance(candidate, AsyncConnection)


def refuse_connection(connection: Any, *, accepted: str) -> InvalidConnectionError:
    """The error for a ``connection=`` of the wrong kind, saying what to pass instead."""
    hint = ""
    if is_sync_connection(connection):
        hint = " A sync psycopg Connection goes to the *_sync methods (or job.enqueue)."
    elif is_async_connection(connection):
        hint = " A psycopg AsyncConnection goes to the async methods (or job.aenqueue)."
    return InvalidConnectionError(
        f"connection= must be {accepted}, got {type(connection).__name__}.{hint}"
    )


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

"""Hearing that a job ended, for :meth:`soniq.Soniq.wait_for`: a connection of its own that
LISTENs on ``DONE_CHANNEL``, and marks the jobs it waits for ``awaited``.

Only ``awaited`` jobs have their end announced (a NOTIFY per job would cost every drain). The
mark is written after the LISTEN, and the job is read after the mark: an end committed before
the mark is seen by that read, one committed after it is announced to this connection.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import AsyncConnection, Connection, sql

from soniq.backends.postgres.statements import DONE_CHANNEL

# The mark touches a live job only: one that ended needs none (its state is read next).
_MARK_AWAITED = """
UPDATE soniq_jobs SET awaited = true
WHERE id = %s::uuid AND status IN ('queued', 'processing') AND NOT awaited
"""
_LISTEN = sql.SQL("LISTEN {}").format(sql.Identifier(DONE_CHANNEL))
APPLICATION_NAME = "soniq-wait"


def announces(payload: str, job_id: str) -> bool:
    """Whether a notification's payload (job ids, comma-separated) names ``job_id``."""
    return job_id in payload.split(",")


class CompletionListener:
    """Async: ``async with await CompletionListener.open(...)``."""

    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, conninfo: str, options: dict[str, Any]) -> CompletionListener:
        connection = await AsyncConnection.connect(
            conninfo, autocommit=True, **{**options, "application_name": APPLICATION_NAME}
        )
        try:
            await connection.execute(_LISTEN)
        except BaseException:
            await connection.close()
            raise
        return cls(connection)

    async def watch(self, job_id: str) -> None:
        await self.connection.execute(_MARK_AWAITED, (job_id,))

    async def wait(self, job_id: str, within: float) -> bool:
        """Whether ``job_id``'s end was announced within ``within`` seconds."""
        async for notify in self.connection.notifies(timeout=within):
            if announces(notify.payload, job_id):
                return True
        return False

    async def close(self) -> None:
        await self.connection.close()


class SyncCompletionListener:
    """The same on a blocking connection, for ``wait_for_sync``."""

    def __init__(self, connection: Connection[Any]) -> None:
        self.connection = connection

    @classmethod
    def open(cls, conninfo: str, options: dict[str, Any]) -> SyncCompletionListener:
        connection = psycopg.connect(
            conninfo, autocommit=True, **{**options, "application_name": APPLICATION_NAME}
        )
        try:
            connection.execute(_LISTEN)
        except BaseException:
            connection.close()
            raise
        return cls(connection)

    def watch(self, job_id: str) -> None:
        self.connection.execute(_MARK_AWAITED, (job_id,))

    def wait(self, job_id: str, within: float) -> bool:
        notifies = self.connection.notifies(timeout=within)
        return any(announces(notify.payload, job_id) for notify in notifies)

    def close(self) -> None:
        self.connection.close()

"""The worker's own long-lived connection: LISTEN for new jobs, and a liveness lock.

It lives outside the pool because both things it holds belong to one session: the LISTEN
registration and the session advisory lock that tells other workers this one is alive (when the
process dies, its connection closes and PostgreSQL releases the lock at once).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

from psycopg import AsyncConnection, sql

from soniq.backends.base import Statement
from soniq.backends.postgres import worker_statements as ws
from soniq.backends.postgres.statements import NOTIFY_CHANNEL


class WorkerSession:
    def __init__(self, connection: AsyncConnection[Any], lock_key: int | None) -> None:
        self.connection = connection
        self.lock_key = lock_key

    @classmethod
    async def open(
        cls,
        conninfo: str,
        *,
        listen: bool,
        lock_key: int | None = None,
        options: dict[str, Any] | None = None,
        setup: Statement | None = None,
    ) -> WorkerSession:
        """Connect, run ``setup`` (server-side keepalives), take the liveness lock (a fresh key
        if none or taken), LISTEN if asked."""
        connection = await AsyncConnection.connect(
            conninfo, autocommit=True, **{**(options or {}), "application_name": "soniq-worker"}
        )
        try:
            if setup is not None:
                await connection.execute(setup.sql, setup.params)
            key = await _take_lock(connection, lock_key)
            if listen:
                await connection.execute(
                    sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL))
                )
        except BaseException:
            await connection.close()
            raise
        return cls(connection, key)

    async def notifications(self, within: float) -> AsyncIterator[str]:
        """Payloads (queue names) received ``within`` seconds; ends when that time is up."""
        async for notify in self.connection.notifies(timeout=within):
            yield notify.payload

    async def ping(self) -> None:
        await self.connection.execute("SELECT 1")

    async def close(self) -> None:
        await self.connection.close()

    @property
    def broken(self) -> bool:
        return self.connection.broken or self.connection.closed


async def _take_lock(connection: AsyncConnection[Any], preferred: int | None) -> int:
    key = preferred
    for _ in range(20):
        if key is None:
            key = random.randint(1, 2**31 - 1)
        statement = ws.try_lock(key)
        cursor = await connection.execute(statement.sql, statement.params)
        row = await cursor.fetchone()
        if row and row[0]:
            return key
        key = None  # held by another session: pick another
    raise RuntimeError("could not take a worker liveness lock after 20 tries")

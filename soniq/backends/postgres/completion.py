"""Hearing that a job ended, for :meth:`soniq.Soniq.wait_for`: a connection of its own that
LISTENs on ``DONE_CHANNEL``, and marks the jobs it waits for ``awaited``.

Only ``awaited`` jobs have their end announced (a NOTIFY per job would cost every drain). The
mark is written after the LISTEN, and the job is read after the mark: an end committed before
the mark is seen by that read, one committed after it is announced to this connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
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

logger = logging.getLogger("soniq")


def announces(payload: str, job_id: str) -> bool:
    """Whether a notification's payload (job ids, comma-separated) names ``job_id``."""
    return job_id in payload.split(",")


class CompletionHub:
    """What every async waiter of one database on one event loop shares: a connection that
    LISTENs and wakes the waiters a notification names, and one that marks jobs awaited
    (a connection runs one statement at a time, and the listening one is always reading).
    It opens with its first waiter and closes after its last, so a thousand jobs awaited at
    once cost two connections, and none is left open between waits."""

    def __init__(
        self,
        conninfo: str,
        options: dict[str, Any],
        on_idle: Callable[[CompletionHub], None] = lambda hub: None,
    ) -> None:
        self.conninfo = conninfo
        self.options = {**options, "application_name": APPLICATION_NAME}
        # Called when the last waiter left and the connections are closed: the registry
        # forgets the hub (it would otherwise keep its event loop alive through the lock).
        self.on_idle = on_idle
        self._waiters: dict[str, list[asyncio.Event]] = {}
        self._users = 0
        self._lock = asyncio.Lock()
        self._listener: AsyncConnection[Any] | None = None
        self._marker: AsyncConnection[Any] | None = None
        self._reader: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def watching(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever ``job_id``'s end is announced (and once if the listening
        connection breaks: the waiter then reads the job, and from then on relies on its
        periodic reads)."""
        event = asyncio.Event()
        self._users += 1
        try:
            async with self._lock:
                if not self._usable():
                    await self._close()
                    await self._open()
                assert self._marker is not None
                self._waiters.setdefault(job_id, []).append(event)
                await self._marker.execute(_MARK_AWAITED, (job_id,))
            yield event
        finally:
            # Bookkeeping without awaiting: a cancellation cannot leave it half done.
            events = self._waiters.get(job_id, [])
            if event in events:
                events.remove(event)
                if not events:
                    del self._waiters[job_id]
            self._users -= 1
            if self._users == 0:
                await asyncio.shield(self._close_if_idle())

    def _usable(self) -> bool:
        return (
            self._marker is not None
            and not self._marker.closed
            and not self._marker.broken
            and self._reader is not None
            and not self._reader.done()
        )

    async def _close_if_idle(self) -> None:
        async with self._lock:
            if self._users == 0:
                await self._close()
                self.on_idle(self)

    async def _open(self) -> None:
        listener = await AsyncConnection.connect(self.conninfo, autocommit=True, **self.options)
        try:
            await listener.execute(_LISTEN)
            self._marker = await AsyncConnection.connect(
                self.conninfo, autocommit=True, **self.options
            )
        except BaseException:
            await listener.close()
            raise
        self._listener = listener
        self._reader = asyncio.create_task(self._read(listener), name="soniq-wait-listener")

    async def _read(self, listener: AsyncConnection[Any]) -> None:
        try:
            async for notify in listener.notifies():
                for job_id in notify.payload.split(","):
                    for event in self._waiters.get(job_id, ()):
                        event.set()
        except Exception as error:
            logger.warning("the connection waiting for job ends broke (%s); polling", error)
            for events in self._waiters.values():
                for event in events:
                    event.set()

    async def _close(self) -> None:
        reader, listener, marker = self._reader, self._listener, self._marker
        self._reader = self._listener = self._marker = None
        try:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            for connection in (listener, marker):
                if connection is not None:
                    await connection.close()


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

"""A worker's presence: registration, heartbeat, LISTEN wake-ups, and the recovery of others.

Three small loops, each surviving database errors:
- the session loop keeps the worker's own connection (LISTEN + liveness lock) open, and
  re-opens it when it drops;
- the heartbeat loop refreshes ``last_heartbeat_at`` and, at the same cadence, runs the
  recovery pass that gives the jobs of dead workers back to the queue;
- the cleanup loop prunes finished jobs every ``cleanup_interval``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from soniq.backends.base import WorkerBackend, WorkerSessionProtocol
from soniq.core.records import WorkerInfo
from soniq.core.settings import SoniqSettings

logger = logging.getLogger("soniq.worker")


class Liveness:
    def __init__(
        self,
        backend: WorkerBackend,
        info: WorkerInfo,
        settings: SoniqSettings,
        wake: asyncio.Event,
        *,
        listen: bool,
    ) -> None:
        self.backend = backend
        self.info = info
        self.settings = settings
        self.wake = wake
        self.listen = listen and backend.supports_listen
        self.session: WorkerSessionProtocol | None = None
        self.lock_key: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, *, with_session: bool = True) -> None:
        if with_session:
            await self._open_session()
        await self.backend.register_worker(self.info, self.lock_key)
        if with_session:
            self._spawn(self._session_loop(), "session")
        self._spawn(self._every(self.settings.heartbeat_interval, self._beat), "heartbeat")
        self._spawn(self._every(self.settings.cleanup_interval, self._prune), "cleanup")

    def _spawn(self, coroutine: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.ensure_future(coroutine))
        self._tasks[-1].set_name(f"soniq-{name}")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        try:
            await self.backend.deregister_worker(self.info.id)
        except Exception:
            logger.exception("could not deregister worker %s", self.info.id)
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def _open_session(self) -> None:
        try:
            self.session = await self.backend.open_session(
                listen=self.listen, lock_key=self.lock_key
            )
            self.lock_key = self.session.lock_key
        except Exception:
            # Behind PgBouncer in transaction mode, for instance: poll, and let the heartbeat
            # timeout be the only sign of death.
            logger.warning(
                "could not open the worker's LISTEN session; polling every %gs",
                self.settings.poll_interval,
                exc_info=True,
            )
            self.session = None

    async def _session_loop(self) -> None:
        while True:
            try:
                if self.session is None or self.session.broken:
                    previous = self.lock_key
                    if self.session is not None:
                        await self.session.close()
                    self.session = None
                    await self._open_session()
                    if self.session is None:
                        await asyncio.sleep(self.settings.error_retry_delay)
                        continue
                    if self.lock_key != previous:
                        await self.backend.register_worker(self.info, self.lock_key)
                    logger.info("worker session re-established")
                    # Notifications sent while we were away are lost: look for work now.
                    self.wake.set()
                if not self.listen:
                    await asyncio.sleep(self.settings.poll_interval)
                    continue
                async for queue in self.session.notifications(self.settings.poll_interval):
                    if self.info.queues is None or queue in self.info.queues:
                        self.wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("worker session lost; reconnecting", exc_info=True)
                if self.session is not None:
                    await self.session.close()
                    self.session = None
                await asyncio.sleep(self.settings.error_retry_delay)

    async def _every(self, interval: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("soniq background task %s failed", action.__name__)
            await asyncio.sleep(interval)

    async def _beat(self) -> None:
        status = await self.backend.heartbeat(self.info.id)
        if status != "running":
            # Another worker gave up on us (we were cut off too long): our jobs may have been
            # requeued, and our fenced writes for them will not apply. Register again.
            logger.error(
                "worker %s was presumed dead (%s); registering again", self.info.id, status
            )
            await self.backend.register_worker(self.info, self.lock_key)
        report = await self.backend.recover_stale_workers(
            heartbeat_timeout=self.settings.heartbeat_timeout,
            # A live worker whose session dropped re-takes its lock within about one interval.
            lock_grace=2 * self.settings.heartbeat_interval,
            max_losses=self.settings.max_worker_losses,
        )
        if report.dead_workers:
            logger.warning(
                "recovered from dead worker(s) %s: %d job(s) requeued, %d dead-lettered",
                ", ".join(report.dead_workers),
                report.requeued,
                report.dead_lettered,
            )
            if report.requeued:
                self.wake.set()

    async def _prune(self) -> None:
        removed = await self.backend.prune(retention=self.settings.result_retention)
        if removed:
            logger.info("pruned %d finished job(s)", removed)

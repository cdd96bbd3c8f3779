"""A worker's presence: registration, heartbeat, LISTEN wake-ups, and the recovery of others.

It also keeps the worker's *lease*: other workers may declare this one dead, and recover its
jobs, once its heartbeat is older than ``HEARTBEAT_TIMEOUT``, or, once its liveness lock is
gone, older than 2 x ``HEARTBEAT_INTERVAL`` (see ``lease()``). So the worker starts a claimed
job only while its last confirmed heartbeat is younger than that, less a margin: a worker that
was paused, cut off, or whose loop was blocked asks for a heartbeat first, and learns it was
presumed dead before it could start a job that is no longer its own.

Three small loops, each surviving database errors:
- the session loop keeps the worker's own connection (liveness lock, and LISTEN when enabled)
  open, and re-opens it when it drops;
- the heartbeat loop refreshes ``last_heartbeat_at``, gives back jobs this worker holds but is
  not running, and runs the recovery pass that requeues the jobs of dead workers;
- the cleanup loop prunes finished jobs every ``cleanup_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
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
        session: bool,
        listen: bool,
        in_flight: Callable[[], list[str]],
        on_presumed_dead: Callable[[], str],
        on_confirmed: Callable[[], None] = lambda: None,
    ) -> None:
        self.backend = backend
        self.info = info
        self.settings = settings
        self.wake = wake
        # No session at all behind PgBouncer in transaction mode (LISTEN_NOTIFY off): neither
        # LISTEN nor a session advisory lock means anything there.
        self.use_session = session and backend.supports_listen
        self.listen = listen and self.use_session
        self.in_flight = in_flight
        self.on_presumed_dead = on_presumed_dead
        # Called after each heartbeat that confirmed this worker is still running.
        self.on_confirmed = on_confirmed
        self.confirmed_at = time.monotonic()
        self._beat_now = asyncio.Event()
        self.session: WorkerSessionProtocol | None = None
        self.lock_key: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    def lease(self) -> float:
        """Seconds after a confirmed heartbeat during which no other worker can find this one
        dead, less a quarter for safety (the recovering worker's statement and ours race).

        With a liveness lock, others find this worker dead 2 x HEARTBEAT_INTERVAL after its
        last heartbeat once the lock is gone, and the lock can be gone without this process
        knowing yet (the server dropped a connection the network then cut off): so that is the
        lease. Without one, only HEARTBEAT_TIMEOUT counts."""
        if self.use_session:
            grace = 2 * self.settings.heartbeat_interval
        else:
            grace = self.settings.heartbeat_timeout
        return 0.75 * grace

    def doubt(self) -> None:
        """A write was refused as if this worker had been presumed dead: start nothing more
        until a heartbeat says which it is (a retried write that had applied, or a new
        identity, dropping what was claimed under the old one)."""
        self.confirmed_at = float("-inf")
        self.beat_soon()

    def may_start(self) -> bool:
        """Whether a claimed job may start now: the lease has not run out."""
        return time.monotonic() - self.confirmed_at < self.lease()

    def beat_soon(self) -> None:
        """Heartbeat now rather than at the next interval (the lease ran out)."""
        self._beat_now.set()

    async def start(self) -> None:
        if self.use_session:
            await self._open_session()
        try:
            self.confirmed_at = time.monotonic()
            await self.backend.register_worker(self.info, self.lock_key)
        except BaseException:
            if self.session is not None:
                await self.session.close()
                self.session = None
            raise
        if self.use_session:
            self._spawn(self._session_loop(), "session")
        self._spawn(self._heartbeat_loop(), "heartbeat")
        self._spawn(self._every(self.settings.cleanup_interval, self._prune), "cleanup")

    def _spawn(self, coroutine: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coroutine)
        task.set_name(f"soniq-{name}")
        self._tasks.append(task)

    async def stop(self) -> None:
        self._stopped = True
        # A cancellation can be swallowed by a task waiting for a pooled connection
        # (psycopg_pool on Python 3.11); cancel again instead of waiting forever, and let the
        # _stopped flag end the loop at its next turn.
        for _ in range(3):
            pending = [task for task in self._tasks if not task.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)
        else:
            logger.warning("background task(s) did not stop: %s", pending)
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
            logger.warning(
                "could not open the worker's session; polling every %gs meanwhile",
                self.settings.poll_interval,
                exc_info=True,
            )
            self.session = None

    async def _session_loop(self) -> None:
        while not self._stopped:
            try:
                if self.session is None or self.session.broken:
                    await self._reopen_session()
                    if self.session is None:
                        await asyncio.sleep(self.settings.error_retry_delay)
                        continue
                if self.listen:
                    async for queue in self.session.notifications(self.settings.poll_interval):
                        if self.info.queues is None or queue in self.info.queues:
                            self.wake.set()
                else:
                    # Nothing else uses this connection: probe it, or a drop goes unnoticed.
                    await self.session.ping()
                    await asyncio.sleep(self.settings.heartbeat_interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("worker session lost; reconnecting", exc_info=True)
                if self.session is not None:
                    await self.session.close()
                    self.session = None

    async def _reopen_session(self) -> None:
        previous = self.lock_key
        if self.session is not None:
            await self.session.close()
            self.session = None
        await self._open_session()
        if self.session is None:
            return
        if self.lock_key != previous:
            await self.backend.register_worker(self.info, self.lock_key)
        logger.info("worker session re-established")
        # Notifications sent while we were away are lost: look for work now.
        self.wake.set()

    async def _every(self, interval: float, action: Callable[[], Awaitable[None]]) -> None:
        while not self._stopped:
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("soniq background task %s failed", action.__name__)
            await asyncio.sleep(interval)

    async def _heartbeat_loop(self) -> None:
        while not self._stopped:
            self._beat_now.clear()
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("soniq background task _beat failed")
                # The database is away: asking again sooner would only fail faster.
                await asyncio.sleep(self.settings.heartbeat_interval)
                continue
            # Sooner when the worker asks (its lease ran out while it had a job to start).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), self.settings.heartbeat_interval)

    async def _beat(self) -> None:
        # The time the heartbeat was sent, not answered: the database's last_heartbeat_at is
        # later than that, so the lease measured from here never outlasts the real one.
        sent = time.monotonic()
        status = await self.backend.heartbeat(self.info.id)
        if status != "running":
            # Another worker gave up on us (we were cut off too long) and requeued our jobs.
            self.info = dataclasses.replace(self.info, id=self.on_presumed_dead())
            sent = time.monotonic()
            await self.backend.register_worker(self.info, self.lock_key)
            # Only now may the new id claim: a job claimed under an id with no running row
            # would be taken back by the next recovery pass while it runs here.
            self.wake.set()
        self.confirmed_at = sent
        self.on_confirmed()
        strays = await self.backend.release_strays(
            self.info.id,
            self.in_flight(),
            older_than=max(5.0, 2 * self.settings.heartbeat_interval),
        )
        if strays:
            logger.warning("%d job(s) held but not running here were put back", strays)
        report = await self.backend.recover_stale_workers(
            heartbeat_timeout=self.settings.heartbeat_timeout,
            # A live worker whose session dropped re-takes its lock within about one interval.
            lock_grace=2 * self.settings.heartbeat_interval,
            max_losses=self.settings.max_worker_losses,
        )
        if report.requeued or report.dead_lettered or report.released or report.dead_workers:
            logger.warning(
                "recovered jobs of dead or stopped workers %s: %d running job(s) requeued, "
                "%d dead-lettered, %d claimed but not started put back",
                ", ".join(report.dead_workers) or "(none registered)",
                report.requeued,
                report.dead_lettered,
                report.released,
            )
            if report.requeued or report.released:
                self.wake.set()

    async def _prune(self) -> None:
        removed = await self.backend.prune(retention=self.settings.result_retention)
        if removed:
            logger.info("pruned %d finished job(s)", removed)

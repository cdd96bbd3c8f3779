"""A worker's presence: registration, heartbeat, LISTEN wake-ups, and the recovery of others.

It also keeps the worker's *lease*: other workers may declare this one dead, and recover its
jobs, once its heartbeat is older than ``HEARTBEAT_TIMEOUT``, or, once its liveness lock is
gone, older than 2 x ``HEARTBEAT_INTERVAL`` (see ``lease()``). So the worker starts a claimed
job only while its last confirmed heartbeat is younger than that, less a margin: a worker that
was paused, cut off, or whose loop was blocked asks for a heartbeat first, and learns it was
presumed dead before it could start a job that is no longer its own.

When the lease runs out with no heartbeat confirmed (the database is away, or the network cut
off), the worker *fences itself* (``on_fenced``): it stops claiming, cancels its running async
jobs and flags its sync ones, before anyone else may take them. When a heartbeat is confirmed
again, ``on_restored`` gives back what it cancelled.

Four small loops, each surviving database errors:
- the session loop keeps the worker's own connection (liveness lock, and LISTEN when enabled)
  open, and re-opens it when it drops;
- the heartbeat loop refreshes ``last_heartbeat_at``, gives back jobs this worker holds but is
  not running, and runs the recovery pass that requeues the jobs of dead workers;
- the fence loop watches the lease;
- the cleanup loop prunes finished jobs every ``cleanup_interval``.

After a database error, each retries after 0.1 s, doubling up to its cap: back at work within a
fraction of a second of the server's return.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from soniq.backends.base import WorkerBackend, WorkerSessionProtocol
from soniq.core.abort import ABORT_NOTICE
from soniq.core.backoff import Backoff
from soniq.core.records import WorkerInfo
from soniq.core.settings import SoniqSettings, recovery_deadline, worker_lease

logger = logging.getLogger("soniq.worker")

# Longest a stopping worker waits to mark its row stopped.
DEREGISTER_TIMEOUT = 2.0


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
        on_fenced: Callable[[], None] = lambda: None,
        on_restored: Callable[[], None] = lambda: None,
        on_abort_requested: Callable[[], None] = lambda: None,
    ) -> None:
        self.backend = backend
        self.info = info
        self.settings = settings
        self.wake = wake
        # No session at all behind PgBouncer in transaction mode (LISTEN_NOTIFY off): neither
        # LISTEN nor a session advisory lock means anything there.
        self.use_session = session and backend.supports_listen
        self.listen = listen and self.use_session
        # Asked before every job start: worked out once from the settings.
        self._lease = worker_lease(settings, session=self.use_session)
        self.in_flight = in_flight
        self.on_presumed_dead = on_presumed_dead
        # Called after each heartbeat that confirmed this worker is still running.
        self.on_confirmed = on_confirmed
        # Called when the lease ran out with no heartbeat confirmed, and when one is again.
        self.on_fenced = on_fenced
        self.on_restored = on_restored
        # Called when a NOTIFY says an abort was requested (of some worker's job).
        self.on_abort_requested = on_abort_requested
        self.confirmed_at = time.monotonic()
        self.fenced = False
        # When a write was refused: start nothing until a heartbeat sent since tells (doubt()).
        self._doubted_at: float | None = None
        self._renewed = asyncio.Event()
        self._beat_now = asyncio.Event()
        self._failing_since: float | None = None
        # The heartbeat in flight, and when it was sent (it may outlive the wait for it).
        self._heartbeat: asyncio.Future[str | None] | None = None
        self._heartbeat_sent = 0.0
        self._heartbeat_read = False
        self._tidying: asyncio.Future[None] | None = None
        self.session: WorkerSessionProtocol | None = None
        self.lock_key: int | None = None
        self._tasks: list[asyncio.Future[Any]] = []
        self._stopped = False

    def lease(self) -> float:
        """Seconds after a confirmed heartbeat during which no other worker can find this one
        dead, less a margin (see ``soniq.core.settings.worker_lease``)."""
        return self._lease

    def doubt(self) -> None:
        """A write was refused as if this worker had been presumed dead: start nothing more
        until a heartbeat says which it is (a retried write that had applied, or a new
        identity, dropping what was claimed under the old one)."""
        self._doubted_at = time.monotonic()
        self.beat_soon()

    def may_start(self) -> bool:
        """Whether a claimed job may start now: the lease has not run out."""
        if self._doubted_at is not None:
            return False
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
        self._spawn(self._fence_loop(), "fence")
        self._spawn(self._every(self.settings.cleanup_interval, self._prune), "cleanup")

    def _spawn(self, coroutine: Awaitable[None], name: str) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coroutine)
        task.set_name(f"soniq-{name}")
        self._tasks = [known for known in self._tasks if not known.done()]
        self._tasks.append(task)
        return task

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
            # Bounded: a stopping worker must not wait CONNECT_TIMEOUT for a server that is
            # gone. A row left running is found dead by the others like any silent worker.
            await asyncio.wait_for(self.backend.deregister_worker(self.info.id), DEREGISTER_TIMEOUT)
        except Exception as error:
            logger.error(
                "could not deregister worker %s (%s: %s); other workers will find it dead",
                self.info.id,
                type(error).__name__,
                str(error)[:500],
            )
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
        backoff = Backoff(self.settings.error_retry_delay)
        while not self._stopped:
            try:
                if self.session is None or self.session.broken:
                    await self._reopen_session()
                    if self.session is None:
                        await asyncio.sleep(backoff.delay())
                        continue
                    backoff.reset()
                if self.listen:
                    async for queue in self.session.notifications(self.settings.poll_interval):
                        if queue == ABORT_NOTICE:
                            self.on_abort_requested()
                        elif self.info.queues is None or queue in self.info.queues:
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
                await asyncio.sleep(backoff.delay())

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
        # Retried soon after a failure (the server may be back within a second), but never
        # more often than the heartbeat itself would run.
        backoff = Backoff(self.settings.heartbeat_interval)
        while not self._stopped:
            self._beat_now.clear()
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._contact_failed(exc)
                await asyncio.sleep(backoff.delay())
                continue
            backoff.reset()
            # Apart from the heartbeat, which must not wait for a long recovery pass.
            if self._tidying is None or self._tidying.done():
                self._tidying = self._spawn(self._tidy_logged(), "tidy")
            # Sooner when the worker asks (its lease ran out while it had a job to start).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), self.settings.heartbeat_interval)

    def _contact_failed(self, exc: BaseException) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            logger.warning(
                "worker %s cannot reach the database (%s: %s); retrying",
                self.info.id,
                type(exc).__name__,
                str(exc) or "no answer in time",
            )
        else:
            logger.debug("heartbeat failed again", exc_info=exc)

    async def _fence_loop(self) -> None:
        """Fence this worker when its lease runs out with no heartbeat confirmed."""
        while not self._stopped:
            self._renewed.clear()
            left = self.confirmed_at + self.lease() - time.monotonic()
            if left > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._renewed.wait(), left)
                continue
            if not self.fenced:
                self.fenced = True
                logger.warning(
                    "worker %s has had no contact with the database for %.1fs: it stops "
                    "claiming and gives up its running jobs (other workers may take them "
                    "back %.1fs from now)",
                    self.info.id,
                    time.monotonic() - self.confirmed_at,
                    self.confirmed_at + self.deadline() - time.monotonic(),
                )
                self.on_fenced()
            self.beat_soon()
            await self._renewed.wait()

    def deadline(self) -> float:
        """Seconds after a heartbeat at which other workers may find this one dead."""
        return recovery_deadline(self.settings, session=self.use_session)

    async def _beat(self) -> None:
        sent, status = await self._heartbeat_within(
            max(self.lease(), self.settings.heartbeat_interval)
        )
        if status != "running":
            # Another worker gave up on us (we were cut off too long) and requeued our jobs.
            self.info = dataclasses.replace(self.info, id=self.on_presumed_dead())
            sent = time.monotonic()
            await self.backend.register_worker(self.info, self.lock_key)
            # Only now may the new id claim: a job claimed under an id with no running row
            # would be taken back by the next recovery pass while it runs here.
            self.wake.set()
        self._confirm(sent)

    async def _heartbeat_within(self, seconds: float) -> tuple[float, str | None]:
        """The heartbeat statement, waited for ``seconds`` at most: one answered after the
        lease is worth nothing. A statement whose connection hangs (the network cut off) is
        left to finish or fail on its own rather than cancelled, since cancelling a query on a
        silent connection waits for the server as well; until it ends, later heartbeats wait
        for it instead of piling up.

        Returns the answer with the time its heartbeat was sent (not answered: the database's
        last_heartbeat_at is later than that, so the lease measured from it never outlasts the
        real one; and a late answer to an old heartbeat does not count as a new one)."""
        if self._heartbeat is not None and self._heartbeat.done() and not self._heartbeat_read:
            # Answered while nobody waited (between two tries): that answer counts, as of
            # when it was sent.
            self._heartbeat_read = True
            return self._heartbeat_sent, self._heartbeat.result()
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat_read = False
            self._heartbeat_sent = time.monotonic()
            self._heartbeat = asyncio.ensure_future(self.backend.heartbeat(self.info.id))
            # Its outcome may arrive when nobody waits for it any more.
            self._heartbeat.add_done_callback(_consume)
            self._tasks = [task for task in self._tasks if not task.done()]
            self._tasks.append(self._heartbeat)
        sent = self._heartbeat_sent
        try:
            status = await asyncio.wait_for(asyncio.shield(self._heartbeat), seconds)
        except TimeoutError:
            raise TimeoutError(f"no answer within {seconds:g}s") from None
        except BaseException:
            self._heartbeat_read = self._heartbeat.done()
            raise
        self._heartbeat_read = True
        return sent, status

    def _confirm(self, sent: float) -> None:
        previous = self.confirmed_at
        self.confirmed_at = max(previous, sent)
        if self._doubted_at is not None and sent >= self._doubted_at:
            self._doubted_at = None  # a heartbeat sent after the refusal answered
        self._renewed.set()
        if self._failing_since is not None or self.fenced:
            logger.info(
                "worker %s reaches the database again, %.1fs after its last heartbeat",
                self.info.id,
                time.monotonic() - previous,
            )
            self._failing_since = None
        if self.fenced and time.monotonic() - self.confirmed_at < self.lease():
            self.fenced = False
            self.on_restored()
        self.on_confirmed()

    async def _tidy_logged(self) -> None:
        try:
            await self._tidy()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("recovering the jobs of dead workers failed")

    async def _tidy(self) -> None:
        """After a heartbeat: give back strays, and recover the jobs of dead workers."""
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


def _consume(future: asyncio.Future[str | None]) -> None:
    if not future.cancelled():
        future.exception()

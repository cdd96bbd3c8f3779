"""The scheduler process: syncs the schedules declared in code, then fires due slots.

Any number of schedulers may run: each due schedule is locked by the one firing it (the
others skip it), and each slot is recorded under a unique (schedule, slot) key in the same
transaction as its job, so no slot fires twice even across a leader change mid-tick. Changes
made from elsewhere (pause, resume, remove, the admin) are read at every tick.

A tick holds its locks for at most about ``lease`` seconds (``SCHEDULER_LEASE``): the backend
bounds its transaction on the server and on the client, so a scheduler that hangs or is cut off
mid-tick loses its locks, and another scheduler fires the slot within about the lease plus one
tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from soniq.backends.base import SchedulerBackend
from soniq.core.backoff import Backoff
from soniq.core.errors import SchemaMissingError
from soniq.core.periodic import ScheduleDefinition, next_slot
from soniq.core.records import NewJob

logger = logging.getLogger("soniq.scheduler")

MakeJob = Callable[[ScheduleDefinition, datetime], NewJob]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    def __init__(
        self,
        backend: SchedulerBackend,
        definitions: Sequence[ScheduleDefinition],
        make_job: MakeJob,
        *,
        tick: float = 1.0,
        lease: float = 5.0,
        error_retry_delay: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if tick <= 0:
            raise ValueError(f"tick must be positive seconds, got {tick!r}")
        if lease <= 0:
            raise ValueError(f"lease must be positive seconds, got {lease!r}")
        self.backend = backend
        self.definitions = list(definitions)
        self.make_job = make_job
        self.tick_seconds = tick
        self.lease = lease
        self.error_retry_delay = error_retry_delay
        self.clock = clock
        self._stopping = asyncio.Event()
        # When the last tick looked for due slots, and whether it fired any.
        self._looked_at: datetime | None = None
        self._fired_any = False

    async def sync(self) -> None:
        """Store the schedules declared in code (updated in place; paused ones stay paused)."""
        now = self.clock()
        for definition in self.definitions:
            await self.backend.upsert_schedule(
                definition, source="code", next_fire_at=next_slot(definition, now)
            )
        logger.info("scheduler: %d schedule(s) declared in code synced", len(self.definitions))

    async def tick(self) -> list[tuple[str, datetime, str]]:
        """Fire the due slots, in one transaction bounded by the lease (``TimeoutError`` if
        it outlives it: the slots are then left to the next tick, here or elsewhere)."""
        now = self.clock()
        self._looked_at, self._fired_any = now, False
        fired = await self.backend.fire_due_schedules(now, self.make_job, lease=self.lease)
        self._fired_any = bool(fired)
        for name, slot, job_id in fired:
            logger.info("fired %s for %s as job %s", name, slot.isoformat(), job_id)
        return fired

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        restore = self._install_signal_handlers()
        synced = False
        # After an error: 0.1 s, doubling up to ERROR_RETRY_DELAY; back to 0.1 s once a tick
        # went through.
        backoff = Backoff(cap=self.error_retry_delay)
        try:
            while not self._stopping.is_set():
                try:
                    if not synced:  # retried like a tick if the database is away at start
                        await self.sync()
                        synced = True
                    await self.tick()
                    wait = await self._until_next_due()
                    backoff.reset()
                except SchemaMissingError:
                    # No tables, no schedules: retrying will not create them (the message
                    # names the command that does).
                    raise
                except TimeoutError as error:
                    # The tick outlived its lease (a hang, a cut-off connection): its
                    # connection is gone, and another scheduler may fire the slots meanwhile.
                    wait = backoff.delay()
                    logger.warning("scheduler tick abandoned: %s; retrying in %.3gs", error, wait)
                except Exception:
                    wait = backoff.delay()
                    logger.exception("scheduler tick failed; retrying in %.3gs", wait)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)
        finally:
            restore()

    async def _until_next_due(self) -> float:
        """Sleep to the next due slot, but at most one tick: a schedule added or resumed
        elsewhere must be noticed promptly. A slot that was already due when the last tick
        looked, and that it did not fire, is another scheduler's (its row was locked) or cannot
        fire: look again in a tick rather than at once, over and over."""
        due = await self.backend.next_due_at()
        if due is None:
            return self.tick_seconds
        if not self._fired_any and self._looked_at is not None and due <= self._looked_at:
            return self.tick_seconds
        return max(0.0, min(self.tick_seconds, (due - self.clock()).total_seconds()))

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop)

        def restore() -> None:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

        return restore

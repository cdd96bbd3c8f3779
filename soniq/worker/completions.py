"""Batched "done" writes: many finished jobs, one UPDATE.

A job's slot is freed as soon as its result is handed over here; the writer sends whatever has
accumulated while the previous write was in flight, so under load batches grow by themselves and
when idle a result is written at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

logger = logging.getLogger("soniq.worker")

Done = tuple[str, int, str | None]  # job id, attempt, result JSON
WriteBatch = Callable[[str, Sequence[Done]], Awaitable[int]]  # (worker id, done) -> applied

MAX_BATCH = 1000


class CompletionWriter:
    def __init__(self, write: WriteBatch, *, retry_delay: float) -> None:
        self._write = write
        self._retry_delay = retry_delay
        self._pending: list[tuple[str, Done]] = []  # (claimed by, done)
        self._in_flight: list[tuple[str, Done]] = []
        self._has_work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def pending_ids(self) -> list[str]:
        """Jobs finished here whose completion is not in the database yet."""
        return [done[0] for _, done in self._pending + self._in_flight]

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="soniq-completions")

    def add(self, claimed_by: str, job_id: str, attempt: int, result_json: str | None) -> None:
        self._pending.append((claimed_by, (job_id, attempt, result_json)))
        self._idle.clear()
        self._has_work.set()

    async def _loop(self) -> None:
        while True:
            await self._has_work.wait()
            self._has_work.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self._in_flight = batch
                await self._write_until_done(batch)
                self._in_flight = []
            self._idle.set()
            if self._closing:
                return

    async def _write_until_done(self, batch: list[tuple[str, Done]]) -> None:
        # One write per worker identity (almost always just one).
        for owner in dict.fromkeys(claimed_by for claimed_by, _ in batch):
            await self._write_owner(owner, [done for by, done in batch if by == owner])

    async def _write_owner(self, owner: str, batch: list[Done]) -> None:
        # A completion is never dropped: if the database is away, keep the batch and retry.
        while True:
            try:
                applied = await self._write(owner, batch)
            except Exception:
                logger.exception(
                    "could not record %d finished job(s); retrying in %gs",
                    len(batch),
                    self._retry_delay,
                )
                await asyncio.sleep(self._retry_delay)
                continue
            if applied < len(batch):
                # The others were recovered meanwhile (this worker was presumed dead): the
                # fence kept their new owner's state.
                logger.warning(
                    "%d finished job(s) had been taken back from this worker; not marked done",
                    len(batch) - applied,
                )
            return

    async def flush(self) -> None:
        """Wait until everything added so far is written."""
        await self._idle.wait()

    async def close(self, grace: float | None = None) -> None:
        self._closing = True
        self._has_work.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                logger.error("gave up recording %d finished job(s) at shutdown", len(self._pending))
                self._task.cancel()

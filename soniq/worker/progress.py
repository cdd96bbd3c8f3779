"""Batched progress writes: the starts and completions of many jobs, one statement.

A job's start is recorded so that, if the worker dies, recovery can tell the jobs it was
running (charged a lost worker) from those it had only claimed (put back uncharged). A job's
slot is freed as soon as its result is handed over here. The writer sends whatever has
accumulated while the previous write was in flight, so under load batches grow by themselves
and when idle a start or a result is written at once. A job that finishes before its start was
sent is written once, as done (with its start time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from soniq.core.backoff import Backoff
from soniq.worker.results import refusal_text, refused_result

logger = logging.getLogger("soniq.worker")

Done = tuple[str, int, str | None]  # job id, attempt, result JSON
Started = tuple[str, int]  # job id, attempt
# (worker id, done, started) -> completions applied
WriteBatch = Callable[[str, Sequence[Done], Sequence[Started]], Awaitable[int]]

MAX_BATCH = 1000
# How long a start waits for company before it is written alone. Most jobs finish within it and
# their start goes out with their completion, in one write instead of two; a job that runs
# longer has its start in the database a few milliseconds late. (A job that kills its worker
# within that time has no recorded start: recovery puts it back uncharged, marked so that its
# next start is written before it runs.)
START_DELAY = 0.005


class ProgressWriter:
    def __init__(
        self,
        write: WriteBatch,
        *,
        retry_delay: float,
        on_refused: Callable[[str], None] = lambda owner: None,
        unstorable: Callable[[BaseException], bool] = lambda error: False,
        on_written: Callable[[Sequence[str]], None] = lambda job_ids: None,
    ) -> None:
        self._write = write
        # Called with the ids of finished jobs once their completion is written.
        self._on_written = on_written
        # Whether a write's error means the database will never take its data.
        self._unstorable = unstorable
        self._backoff = Backoff(retry_delay)
        self._retry = asyncio.Event()
        # Called with a worker id when the database refused completions made under it: the
        # jobs were taken back, so that id was presumed dead.
        self._on_refused = on_refused
        # (claimed by, job id) -> started: a job can be claimed again under a new identity
        # while its old run still ends here.
        self._started: dict[tuple[str, str], Started] = {}
        self._done: list[tuple[str, Done]] = []  # (claimed by, done)
        self._in_flight: list[str] = []
        self._unwritten: list[str] = []
        self._has_work = asyncio.Event()
        self._has_done = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def pending_ids(self) -> list[str]:
        """Jobs finished here whose completion is not in the database yet (or never will be:
        even a placeholder was refused; they stay the worker's until it stops, and then go
        through recovery, instead of being released and run again at once)."""
        return [done[0] for _, done in self._done] + self._in_flight + self._unwritten

    def retry_now(self) -> None:
        """The database answers again: a write waiting to be retried goes now."""
        self._retry.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="soniq-progress")

    def add_started(self, claimed_by: str, job_id: str, attempt: int) -> None:
        self._started[(claimed_by, job_id)] = (job_id, attempt)
        self._wake()

    def add(self, claimed_by: str, job_id: str, attempt: int, result_json: str | None) -> None:
        # Not sent yet: the completion records the start too.
        self._started.pop((claimed_by, job_id), None)
        self._done.append((claimed_by, (job_id, attempt, result_json)))
        self._has_done.set()
        self._wake()

    def forget_started(self, claimed_by: str, job_id: str) -> None:
        """A job that ended without a completion (failed, released): no start to write."""
        self._started.pop((claimed_by, job_id), None)

    def _wake(self) -> None:
        self._idle.clear()
        self._has_work.set()

    async def _loop(self) -> None:
        while True:
            await self._has_work.wait()
            self._has_work.clear()
            if not self._done and not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._has_done.wait(), START_DELAY)
            self._has_done.clear()
            while self._done or self._started:
                done, self._done = self._done[:MAX_BATCH], self._done[MAX_BATCH:]
                room = MAX_BATCH - len(done)
                started = [(by, entry) for (by, _), entry in self._started.items()][:room]
                for by, (job_id, _) in started:
                    del self._started[(by, job_id)]
                self._in_flight = [job_id for _, (job_id, _, _) in done]
                await self._write_until_done(done, started)
                self._in_flight = []
            self._idle.set()
            if self._closing:
                return

    async def _write_until_done(
        self, done: list[tuple[str, Done]], started: list[tuple[str, Started]]
    ) -> None:
        # One write per worker identity (almost always just one).
        owners = dict.fromkeys([by for by, _ in done] + [by for by, _ in started])
        for owner in owners:
            await self._write_owner(
                owner,
                [entry for by, entry in done if by == owner],
                [entry for by, entry in started if by == owner],
            )

    async def _write_owner(
        self, owner: str, done: list[Done], started: list[Started], *, placeholder: bool = False
    ) -> None:
        # Never dropped: if the database is away, keep the batch and retry.
        while True:
            try:
                applied = await self._write(owner, done, started)
            except Exception as error:
                if self._unstorable(error) and placeholder:
                    logger.error(
                        "the database refused even a placeholder result for job %s; left "
                        "to recovery once this worker stops",
                        done[0][0],
                    )
                    self._unwritten.append(done[0][0])
                    return
                if self._unstorable(error):
                    await self._write_apart(owner, done, started, error)
                    return
                delay = self._backoff.delay()
                logger.exception(
                    "could not record %d finished and %d started job(s); retrying in %gs",
                    len(done),
                    len(started),
                    delay,
                )
                self._retry.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry.wait(), delay)
                continue
            self._backoff.reset()
            if done:
                self._on_written([job_id for job_id, _, _ in done])
            if applied < len(done):
                # The others were recovered meanwhile (this worker was presumed dead): the
                # fence kept their new owner's state.
                logger.warning(
                    "%d finished job(s) had been taken back from this worker; not marked done",
                    len(done) - applied,
                )
                self._on_refused(owner)
            return

    async def _write_apart(
        self, owner: str, done: list[Done], started: list[Started], refusal: BaseException
    ) -> None:
        """The database refuses the data of a batch (``refusal``): retrying it as it is would
        fail for ever. Split it in halves until the row at fault is alone, and write that
        job's completion with a placeholder for its result, so every other job in the batch
        is written as it is."""
        if len(done) + len(started) > 1:
            half = len(done) // 2
            if half:
                await self._write_owner(owner, done[:half], started)
                await self._write_owner(owner, done[half:], [])
            else:  # starts alone carry no data; written one by one all the same
                middle = len(started) // 2
                await self._write_owner(owner, done, started[:middle])
                await self._write_owner(owner, [], started[middle:])
            return
        if not done:
            logger.error(
                "the database refused the start of job %s: %s",
                started[0][0],
                refusal_text(refusal),
            )
            return
        job_id, attempt, _ = done[0]
        logger.error(
            "the database refused the result of job %s (%s); storing a placeholder",
            job_id,
            refusal_text(refusal),
        )
        await self._write_owner(
            owner, [(job_id, attempt, refused_result(refusal))], [], placeholder=True
        )

    async def flush(self) -> None:
        """Wait until everything added so far is written."""
        await self._idle.wait()

    async def close(self, grace: float | None = None) -> None:
        self._closing = True
        self._has_work.set()
        self._has_done.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                logger.error(
                    "gave up recording %d finished job(s) at shutdown; recovery will take "
                    "them back",
                    len(self._done) + len(self._in_flight),
                )
                self._task.cancel()

"""The worker: claims jobs, runs them, records what happened, and shuts down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from soniq._version import __version__
from soniq.backends.base import WorkerBackend
from soniq.core import wakeup
from soniq.core.backoff import Backoff
from soniq.core.records import ClaimedJob, WorkerInfo
from soniq.core.registry import JobRegistry
from soniq.core.retry import retry_delay_seconds
from soniq.core.settings import SoniqSettings, build_settings
from soniq.core.spec import JobSpec
from soniq.core.status import DISCARDED
from soniq.worker.claiming import Claimer
from soniq.worker.execution import JobRunner, Outcome, SyncCallWrapper, stripped
from soniq.worker.hooks import Hooks, check_hooks
from soniq.worker.liveness import Liveness
from soniq.worker.observer import JobObserver
from soniq.worker.pace import Pace
from soniq.worker.progress import ProgressWriter
from soniq.worker.results import refusal_text
from soniq.worker.unstorable import is_unstorable
from soniq.worker.watchdog import LoopWatchdog

logger = logging.getLogger("soniq.worker")

T = TypeVar("T")

# Seconds between the INFO summaries of what a running worker did (none when nothing happened).
SUMMARY_INTERVAL = 60.0
# Seconds a stopping worker still tries to record outcomes after SHUTDOWN_TIMEOUT.
WRITE_GRACE = 5.0
# Seconds between the looks for abort requests of this worker's jobs, while it holds any
# (with LISTEN, a notification makes it look at once; this is the fallback, and the only way
# behind PgBouncer).
ABORT_POLL_INTERVAL = 1.0
# The start line names at most this many tasks, then how many more there are.
LISTED_TASKS = 20
# What the summary counts, in its order: job outcomes, then database writes that failed (and
# were retried); the last two outcomes are named only when they happened.
SUMMARY_COUNTS = (
    ("done", "done", True),
    ("retried", "retried", True),
    ("dead_lettered", "dead-lettered", True),
    ("cancelled", "cancelled", False),
    ("snoozed", "snoozed", False),
    ("given_up", "given up after contact was lost", False),
    ("taken_back", "taken back from this worker", False),
    ("unrecorded", "not recorded (left to recovery)", False),
    ("failed_writes", "failed write(s)", True),
)


class Worker:
    """Runs the jobs of ``registry`` stored in ``backend``.

    ``run()`` works until SIGINT/SIGTERM (or ``stop()``); ``run_once()`` drains what is due and
    returns. Both return True when any job ran.
    """

    def __init__(
        self,
        backend: WorkerBackend,
        registry: JobRegistry,
        settings: SoniqSettings | None = None,
        hooks: Hooks | None = None,
        *,
        sync_call_wrapper: SyncCallWrapper | None = None,
        observer: JobObserver | None = None,
    ) -> None:
        self.backend = backend
        self.observer = observer
        self.registry = registry
        self.settings = settings if settings is not None else build_settings()
        self.hooks = check_hooks(hooks)
        self.sync_call_wrapper = sync_call_wrapper
        self.id = str(uuid.uuid4())
        self._stopping = asyncio.Event()
        self._stop_requested_at: float | None = None  # time.monotonic() of the stop request
        self._force = asyncio.Event()
        # run_once's job is given up (the worker fenced itself): like _force, for that job.
        self._give_up_current = asyncio.Event()
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._confirmed = asyncio.Event()  # a heartbeat renewed the lease
        self._running: dict[asyncio.Task[None], ClaimedJob] = {}
        # Claimed ahead of a free slot (see soniq.worker.pace): started without a query.
        self._ready: deque[ClaimedJob] = deque()
        # The job running alone (it was running when a worker died), if any.
        self._alone: asyncio.Task[None] | None = None
        self._alone_thread_left = False
        self._pace = Pace()
        self._liveness: Liveness | None = None
        self._processed = 0
        # Outcomes (and failed writes) since the last summary; see SUMMARY_COUNTS.
        self._tally: Counter[str] = Counter()
        self._signals_received = 0
        # What the database may say this worker holds, besides _running and _ready: the job
        # of run_once, and finished jobs whose completion is not written yet.
        self._current: ClaimedJob | None = None
        # Jobs whose outcome could not be recorded: held until the worker stops (see _record).
        self._unrecorded: dict[str, ClaimedJob] = {}
        self._writer: ProgressWriter | None = None
        self._runner_in_use: JobRunner | None = None
        # Async jobs cancelled when the worker fenced itself: given back (uncharged) when
        # contact returns, unless the worker was presumed dead meanwhile (then others did).
        self._given_up: dict[asyncio.Task[None], ClaimedJob] = {}
        # The tasks of _running whose job is running now (not waiting for its start to be
        # written, nor for its outcome to be): only those are cancelled by a fence.
        self._executing: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[None]] = set()
        # Set by a notification that an abort was requested: look for this worker's at once.
        self._abort_check = asyncio.Event()
        self._claimer: Claimer | None = None

    # -- public API -------------------------------------------------------------------------

    async def run(
        self, concurrency: int = 4, run_once: bool = False, queues: list[str] | None = None
    ) -> bool:
        self._reset()
        if run_once:
            return await self.run_once(queues=queues)
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        return await self._run_continuously(concurrency, self._queues(queues))

    async def run_once(self, queues: list[str] | None = None, max_jobs: int | None = None) -> bool:
        """Process due jobs one after another until none is left (or ``max_jobs`` ran)."""
        if max_jobs is not None and max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1, got {max_jobs}")
        self._reset()
        scoped = self._queues(queues)
        names = self.registry.names()
        if not names:
            return False
        ran = 0
        current: ClaimedJob | None = None
        async with self._presence(scoped, 1, listen=False), self._watchdog():
            threads = ThreadPoolExecutor(1, thread_name_prefix="soniq-job")
            runner = self._runner(threads)
            claimer = self._claimer = self._make_claimer(scoped, 1)
            try:
                while not self._stopping.is_set() and (max_jobs is None or ran < max_jobs):
                    claimer.rearm()  # one job at a time: look at the limited ones every time
                    limited, plain = await claimer.claim(self.id, 1)
                    if not limited and not plain:
                        break
                    [current] = limited or plain
                    self._current = current
                    if not await self._still_mine(current):
                        current = self._current = None
                        continue
                    # One job at a time: its start is written before it runs.
                    if not await self.backend.start_jobs(
                        current.claimed_by, [(current.id, current.attempt)]
                    ):
                        current = self._current = None
                        continue
                    began = time.monotonic()
                    outcome = await self._run_interruptibly(runner, current)
                    if outcome is None:
                        # A second signal, or the worker fenced itself: the finally block
                        # puts the job back (or recovery will).
                        break
                    await self._record(
                        current, outcome, writer=None, duration=time.monotonic() - began
                    )
                    claimer.finished([current.id])
                    current = self._current = None
                    ran += 1
            finally:
                if current is not None:
                    # Interrupted (a second signal, a cancelled task): back to the queue.
                    await self._release([current])
                    self._current = None
                threads.shutdown(wait=False, cancel_futures=True)
        return ran > 0

    def _reset(self) -> None:
        """A Worker can run again after a run ended (stopped or cancelled)."""
        for event in (self._stopping, self._force, self._wake, self._slot_freed, self._confirmed):
            event.clear()
        self._signals_received = 0
        self._stop_requested_at = None
        self._processed = 0
        self._pace.restart()
        self._tally.clear()
        self._running.clear()
        self._ready.clear()
        self._alone = None
        self._alone_thread_left = False
        self._current = None
        self._unrecorded = {}
        self._writer = None
        self._runner_in_use = None
        self._given_up = {}
        self._executing.clear()
        self._give_up_current.clear()

    def stop(self) -> None:
        """Ask a running worker to finish gracefully (what SIGTERM does)."""
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        self._stopping.set()
        # The fetch loop waits on one of these: each tells of the stop request by itself.
        self._wake.set()
        self._slot_freed.set()

    # -- continuous mode --------------------------------------------------------------------

    async def _run_continuously(self, concurrency: int, queues: tuple[str, ...] | None) -> bool:
        writer = ProgressWriter(
            self._write_progress,
            retry_delay=self.settings.error_retry_delay,
            on_refused=self._doubt_identity,
            unstorable=is_unstorable,
            on_written=self._limits_freed,
        )
        self._writer = writer
        async with (
            self._presence(queues, concurrency, listen=self.settings.listen_notify),
            self._watchdog(),
        ):
            writer.start()
            logger.info(
                "worker %s started: concurrency %d, prefetch up to %d, queues %s, %s",
                self.id,
                concurrency,
                self.settings.prefetch,
                ",".join(queues) if queues else "all",
                self._task_list(),
            )
            summaries = asyncio.create_task(self._summaries(), name="soniq-summary")
            # Not a `with` block: leaving it would wait for sync jobs that overran their
            # timeout, and those cannot be interrupted.
            threads = ThreadPoolExecutor(concurrency, thread_name_prefix="soniq-job")
            try:
                runner = self._runner(threads, concurrency)
                try:
                    await self._fetch_loop(runner, writer, concurrency, queues)
                finally:
                    await self._drain()
                    # Given-up jobs still being put back.
                    await asyncio.gather(*self._background, return_exceptions=True)
            finally:
                summaries.cancel()
                await asyncio.gather(summaries, return_exceptions=True)
                threads.shutdown(wait=False, cancel_futures=True)
                # Completions are worth waiting for a little beyond the shutdown timeout.
                # What is left of the shutdown time (the drain has used some of it).
                left = self._shutdown_time_left()
                grace = self.settings.shutdown_timeout + WRITE_GRACE if left is None else left
                await writer.close(grace=max(grace, 0.0))
                await asyncio.gather(*self._background, return_exceptions=True)
        logger.info("worker %s stopped after %d job(s)", self.id, self._processed)
        return self._processed > 0

    def _task_list(self) -> str:
        """The tasks this worker serves, for its start line: all of them, or the first
        ``LISTED_TASKS`` and how many more."""
        names = self.registry.names()
        listed = ", ".join(names[:LISTED_TASKS])
        if len(names) > LISTED_TASKS:
            listed += f", ... ({len(names) - LISTED_TASKS} more)"
        return f"{len(names)} task(s): {listed}" if names else "no tasks"

    async def _summaries(self) -> None:
        """Every ``SUMMARY_INTERVAL`` seconds, one INFO line of what happened since the last
        one, if anything did. Cancelled when the worker stops."""
        while True:
            interval = SUMMARY_INTERVAL
            await asyncio.sleep(interval)
            self._log_summary(interval)

    def _log_summary(self, interval: float) -> None:
        counts, self._tally = self._tally, Counter()
        if any(counts.values()):
            logger.info(
                "worker %s, last %gs: %s",
                self.id,
                interval,
                ", ".join(
                    f"{counts[key]} {label}"
                    for key, label, always in SUMMARY_COUNTS
                    if always or counts[key]
                ),
            )

    async def _write_progress(
        self,
        worker_id: str,
        done: Sequence[tuple[str, int, str | None]],
        started: Sequence[tuple[str, int]],
    ) -> int:
        """The progress writer's batch write, counting failures for the summary."""
        try:
            return await self.backend.complete_jobs(worker_id, done, started)
        except Exception:
            self._tally["failed_writes"] += 1
            raise

    @contextlib.asynccontextmanager
    async def _watchdog(self) -> AsyncIterator[None]:
        """Warns while an async job blocks the event loop (and with it every other job and the
        heartbeat), naming the async jobs that were running."""
        watchdog = LoopWatchdog(self.settings.loop_stall_warning, self._running_async)
        watchdog.start()
        try:
            yield
        finally:
            watchdog.stop()

    def _running_async(self) -> list[str]:
        # Called from the watchdog's thread while the loop is stuck: a snapshot, no await.
        jobs = list(self._running.values())
        if self._current is not None:
            jobs.append(self._current)
        return [
            f"{job.task_name} ({job.id})"
            for job in jobs
            if (spec := self.registry.get(job.task_name)) is not None and spec.is_async
        ]

    @contextlib.asynccontextmanager
    async def _presence(
        self, queues: tuple[str, ...] | None, concurrency: int, *, listen: bool
    ) -> AsyncIterator[None]:
        """Registered, heartbeating and answering signals for the duration of the block."""
        await self.backend.prepare_for_work()
        restore_signals = self._install_signal_handlers()
        stop_hearing = self._hear_local_enqueues(queues)
        try:
            liveness = Liveness(
                self.backend,
                self._info(queues, concurrency),
                self.settings,
                self._wake,
                session=self.settings.listen_notify,
                listen=listen,
                in_flight=self._in_flight_ids,
                on_presumed_dead=self._take_new_identity,
                on_confirmed=self._on_confirmed,
                on_fenced=self._fence,
                on_restored=self._restore,
                on_abort_requested=self._abort_check.set,
            )
            await liveness.start()
            self._liveness = liveness
            watch = asyncio.create_task(self._watch_aborts(), name="soniq-aborts")
            try:
                yield
            finally:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
                self._liveness = None
                await liveness.stop()
        finally:
            stop_hearing()
            restore_signals()

    async def _watch_aborts(self) -> None:
        """Stop the jobs whose abort an operator requested: look every
        :data:`ABORT_POLL_INTERVAL` seconds while this worker holds jobs, and at once when a
        notification says an abort was requested."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ABORT_POLL_INTERVAL):
                    await self._abort_check.wait()
            self._abort_check.clear()
            if not (self._running or self._ready or self._current is not None):
                continue
            try:
                requested = await self.backend.aborts_requested(self.id)
            except Exception as error:
                logger.debug("could not look for abort requests: %s", error)
                continue
            for job_id, by, at in requested:
                self._abort(job_id, by, "" if at is None else at.isoformat())
            runner = self._runner_in_use
            if runner is not None:
                runner.keep_early_aborts({job_id for job_id, _, _ in requested})

    def _abort(self, job_id: str, by: str, at: str) -> None:
        """An abort of ``job_id`` was requested: stop it if it runs here; a job claimed and
        not started goes back, which ends it cancelled."""
        runner = self._runner_in_use
        if runner is not None and runner.abort(job_id, by, at):
            logger.info("job %s: abort requested by %s; stopping it", job_id, by or "(unknown)")
            return
        for job in self._ready:
            if job.id == job_id:
                self._ready.remove(job)
                if runner is not None:
                    runner.forget_abort(job_id)
                logger.info("job %s: abort requested by %s before it started", job_id, by)
                task = asyncio.ensure_future(self._release([job]))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                self._slot_freed.set()
                return

    def _hear_local_enqueues(self, queues: tuple[str, ...] | None) -> Callable[[], None]:
        """Without LISTEN, jobs enqueued in this very process still wake the worker at once."""
        if self.backend.supports_listen:
            return lambda: None
        loop = asyncio.get_running_loop()

        def heard(committed: frozenset[str]) -> None:
            if queues is None or not committed or committed & set(queues):
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._wake.set)

        return wakeup.subscribe(heard)

    async def _fetch_loop(
        self,
        runner: JobRunner,
        writer: ProgressWriter,
        concurrency: int,
        queues: tuple[str, ...] | None,
    ) -> None:
        claimer = self._claimer = self._make_claimer(queues, concurrency)
        backoff = Backoff(self.settings.error_retry_delay)
        while not self._stopping.is_set():
            self._slot_freed.clear()
            self._start_ready(runner, writer, concurrency)
            free = max(concurrency - self._busy(runner), 0)
            ahead = self._pace.ahead(self.settings.prefetch)
            if self._isolating(runner) or (self._ready and self._ready[0].runs_alone):
                free = ahead = 0  # its other slots stay idle: nothing is claimed for them
            # Claim for the free slots, and ahead of them what the slots will start soon
            # (Pace), once the jobs claimed ahead run low: one round trip per batch, not one
            # per freed slot. The claim goes out while the jobs still held keep the slots
            # busy, so that its round trip does not leave them idle.
            wanted = free + ahead - len(self._ready)
            if wanted <= 0 or len(self._ready) > ahead // 2 or not self._may_start():
                await self._until(self._slot_freed, at_most=None)
                continue
            # Cleared before the claim: a notification arriving during it wakes the next wait.
            # One that came meanwhile (new jobs, or room under a limit) is worth a limited claim.
            if self._wake.is_set():
                claimer.noticed()
            self._wake.clear()
            if claimer.limited_due():
                # Beside the plain claim, not before it: the limited claim is a short
                # transaction of its own, and the slots must not wait for it.
                self._in_background(
                    self._claim_limited(
                        runner, writer, concurrency, claimer.limited_wanted(wanted, free)
                    )
                )
            try:
                plain = await claimer.claim_plain(self.id, wanted)
            except Exception:
                delay = backoff.delay()
                logger.exception("claiming jobs failed; retrying in %gs", delay)
                # Or as soon as a heartbeat gets through: the database is back.
                self._confirmed.clear()
                await self._until(self._confirmed, at_most=delay)
                continue
            backoff.reset()
            self._ready.extend(plain)
            self._start_ready(runner, writer, concurrency)
            if len(plain) < wanted:
                # The queue had no more due jobs: wait for a notification (or the next poll,
                # or a full rate limit's room) instead of claiming again at once, which would
                # also hold up the start of the jobs just claimed by the time it takes to
                # send that claim.
                await self._until(
                    self._wake, at_most=claimer.wait_limit(self.settings.poll_interval)
                )
                claimer.noticed()

    @property
    def busy_slots(self) -> int:
        """Slots taken now: jobs running, and threads still running a sync job past its
        timeout (the ``soniq_worker_busy_slots`` gauge)."""
        runner = self._runner_in_use
        return len(self._running) + (runner.overrunning() if runner is not None else 0)

    def _busy(self, runner: JobRunner) -> int:
        """Slots taken: running jobs, and threads still running a sync job past its timeout."""
        return len(self._running) + runner.overrunning()

    def _may_start(self) -> bool:
        if self._liveness is None or self._liveness.may_start():
            return True
        # The lease ran out (the worker was paused, cut off, or its loop blocked): heartbeat
        # first, so that a worker presumed dead meanwhile does not start what it lost.
        self._liveness.beat_soon()
        return False

    def _isolating(self, runner: JobRunner) -> bool:
        """A job runs alone here, or its thread still runs past its timeout."""
        if self._alone is not None:
            return True
        if self._alone_thread_left and runner.overrunning():
            return True
        self._alone_thread_left = False
        return False

    def _start_ready(self, runner: JobRunner, writer: ProgressWriter, concurrency: int) -> None:
        while self._ready and not self._stopping.is_set() and not self._isolating(runner):
            if self._busy(runner) >= concurrency or not self._may_start():
                return
            job = self._ready[0]
            if job.claimed_by != self.id:
                # Claimed under an identity this worker lost (presumed dead): not its own.
                self._ready.popleft()
                continue
            if job.runs_alone and self._busy(runner):
                # It may be what killed a worker: it waits until nothing else runs here, so
                # that if it kills this one too, no other job is charged for it.
                return
            self._ready.popleft()
            task = asyncio.create_task(self._work(runner, writer, job, concurrency))
            self._running[task] = job
            if job.runs_alone:
                self._alone = task
                logger.info(
                    "job %s (%s) was running when a worker died; running it alone",
                    job.id,
                    job.task_name,
                )

    async def _work(
        self, runner: JobRunner, writer: ProgressWriter, job: ClaimedJob, concurrency: int
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            if not await self._still_mine(job):
                return
            if job.suspicion:
                # Its start is written before it runs, so that if it kills this worker,
                # recovery knows it was running.
                if not await self._write_start(job):
                    return
            else:
                writer.add_started(job.claimed_by, job.id, job.attempt)
            self._executing.add(task)
            began = time.monotonic()
            try:
                outcome = await runner.run(self._spec(job), job)
            finally:
                self._executing.discard(task)
            self._pace.finished()
            await self._record(job, outcome, writer=writer, duration=time.monotonic() - began)
        finally:
            self._running.pop(task, None)
            if self._alone is task:
                self._alone = None
                # A sync job that overran its timeout still runs in its thread: what it does
                # there may still kill the worker, so nothing starts beside it until it returns.
                self._alone_thread_left = runner.overrunning() > 0
            self._start_ready(runner, writer, concurrency)
            self._slot_freed.set()

    async def _still_mine(self, job: ClaimedJob) -> bool:
        """Whether ``job`` may run now. Its task was created within the lease, but the loop may
        have stalled (or the process been paused) before the task ran: past the lease, wait for
        a heartbeat, and drop the job if this worker turned out to be presumed dead."""
        while not self._may_start():
            self._confirmed.clear()
            await self._until(self._confirmed, at_most=self.settings.heartbeat_interval)
            if self._stopping.is_set():
                await self._release([job])  # not started: back to the queue, uncharged
                return False
        if job.claimed_by != self.id:
            logger.warning("job %s was claimed under a lost identity; not started", job.id)
            return False
        return True

    async def _write_start(self, job: ClaimedJob) -> bool:
        """Record that ``job`` starts; False if this worker no longer holds it."""
        started = await self._until_written(
            f"the start of job {job.id}",
            lambda: self.backend.start_jobs(job.claimed_by, [(job.id, job.attempt)]),
        )
        if started is None:
            return False
        if not started:
            logger.warning("job %s was taken back from this worker before it started", job.id)
            self._doubt_identity(job.claimed_by)
        return bool(started)

    async def _drain(self) -> None:
        """Give running jobs ``shutdown_timeout`` to finish; cancel and requeue the rest."""
        waiting = list(self._ready)
        self._ready.clear()
        if self._running and not self._force.is_set():
            logger.info(
                "waiting up to %gs for %d running job(s)",
                self.settings.shutdown_timeout,
                len(self._running),
            )
            everything: asyncio.Future[Any] = asyncio.gather(*self._running, return_exceptions=True)
            forced: asyncio.Future[Any] = asyncio.ensure_future(self._force.wait())
            await asyncio.wait(
                [everything, forced],
                timeout=self.settings.shutdown_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            forced.cancel()
        leftovers = dict(self._running)
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        # Jobs cancelled by a fence whose release has not happened yet (still out of contact).
        given_up, self._given_up = self._given_up, {}
        await asyncio.gather(*given_up, return_exceptions=True)
        cancelled = [job for task, job in given_up.items() if task.cancelled()]
        interrupted = [*leftovers.values(), *waiting, *cancelled]
        if leftovers:
            logger.warning("%d job(s) did not finish in time", len(leftovers))
        await self._release(interrupted)

    async def _release(self, jobs: Sequence[ClaimedJob]) -> None:
        """Put interrupted or never-started jobs back, without charging their attempt."""
        if not jobs:
            return
        try:
            released = 0
            for owner in {job.claimed_by for job in jobs}:
                mine = [(job.id, job.attempt) for job in jobs if job.claimed_by == owner]
                left = self._shutdown_time_left()
                release = self.backend.release_jobs(owner, mine)
                # Stopping: within what is left of the shutdown time (at least a second), so
                # that a database that is gone cannot hold the exit for CONNECT_TIMEOUT.
                released += await (
                    release if left is None else asyncio.wait_for(release, max(left, 1.0))
                )
            logger.info("%d job(s) put back in the queue", released)
            self._limits_freed([job.id for job in jobs])
        except Exception:
            # The recovery pass of any worker puts them back: this worker is about to be
            # deregistered, and jobs of a worker that is not running are recovered.
            logger.exception("could not put back %d job(s); recovery will", len(jobs))

    async def _run_interruptibly(self, runner: JobRunner, job: ClaimedJob) -> Outcome | None:
        """Run one job; ``None`` when a second signal (``_force``) cancelled it, or the worker
        fenced itself and gave it up."""
        task = asyncio.ensure_future(runner.run(self._spec(job), job))
        forced = asyncio.ensure_future(self._force.wait())
        given_up = asyncio.ensure_future(self._give_up_current.wait())
        try:
            await asyncio.wait([task, forced, given_up], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # run_once() itself was cancelled: the job must not go on running unseen.
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            forced.cancel()
            given_up.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        return task.result()

    # -- recording outcomes -----------------------------------------------------------------

    async def _record(
        self,
        job: ClaimedJob,
        outcome: Outcome,
        *,
        writer: ProgressWriter | None,
        duration: float = 0.0,
    ) -> None:
        self._processed += 1
        if outcome.contact_lost and not outcome.succeeded:
            # It stopped because this worker lost contact (ctx.contact_lost), not through a
            # fault of its own: back to the queue uncharged, if it is still held here.
            if writer is not None:
                writer.forget_started(job.claimed_by, job.id)
            logger.info("job %s stopped after contact was lost; putting it back", job.id)
            await self._release([job])
            self._finished(job, "given_up", duration)
            return
        if writer is not None:
            if outcome.succeeded:
                writer.add(job.claimed_by, job.id, job.attempt, outcome.result_json)
                self._finished(job, "done", duration)
                return
            writer.forget_started(job.claimed_by, job.id)
        applied = await self._until_written(
            f"the outcome of job {job.id}", lambda: self._write_outcome(job, outcome)
        )
        # Written, refused or given up: this worker no longer counts it against a limit.
        self._limits_freed([job.id])
        if applied is None:
            # Given up (the worker is stopping, or even a stripped outcome was refused): the
            # job stays claimed by this worker, and recovery takes it back once it is gone.
            # Meanwhile it is held here, so that it is not released as a stray and run again
            # at once: it comes back only through recovery, charged, as a crashed worker's.
            self._unrecorded[job.id] = job
            self._finished(job, "unrecorded", duration)
        elif not applied:
            logger.warning("job %s was taken back from this worker; its outcome is dropped", job.id)
            self._doubt_identity(job.claimed_by)
            self._finished(job, "taken_back", duration)
        elif outcome.succeeded:
            self._finished(job, "done", duration)
        elif outcome.cancelled:
            self._finished(job, "cancelled", duration)
        elif outcome.snooze_delay is not None:
            self._finished(job, "snoozed", duration)
        else:
            final = job.attempt >= job.max_attempts or outcome.dead_letter_reason is not None
            self._finished(job, "dead_lettered" if final else "retried", duration)

    def _finished(self, job: ClaimedJob, outcome: str, duration: float) -> None:
        """Count a finished job for the summary; log it at DEBUG, with its fields as the
        record's attributes (job_id, task, queue, attempt, duration, outcome)."""
        self._tally[outcome] += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "job %s (%s) %s, attempt %d, %.3fs",
                job.id,
                job.task_name,
                outcome,
                job.attempt,
                duration,
                extra={
                    "job_id": job.id,
                    "task": job.task_name,
                    "queue": job.queue,
                    "attempt": job.attempt,
                    "duration": duration,
                    "outcome": outcome,
                },
            )

    async def _until_written(self, what: str, write: Callable[[], Awaitable[T]]) -> T | None:
        """Run a database write until it succeeds: a start or an outcome is never dropped
        because the database blinked. ``None`` when it will never succeed (the database
        refuses its data, see :func:`is_unstorable`) or may no longer be waited for: the
        worker is stopping and its shutdown time (``SHUTDOWN_TIMEOUT`` + 5 s) is over, or a
        second signal came."""
        backoff = Backoff(self.settings.error_retry_delay)
        while True:
            try:
                left = self._shutdown_time_left()
                if left is None:
                    return await write()
                # Stopping: no attempt may outlast the shutdown time (one waiting for a
                # connection to a server that is gone would take CONNECT_TIMEOUT).
                return await asyncio.wait_for(write(), max(left, 0.0))
            except Exception as error:
                self._tally["failed_writes"] += 1
                if is_unstorable(error):
                    logger.error(
                        "could not record %s: the database refuses its data (%s)",
                        what,
                        refusal_text(error),
                    )
                    return None
                if self._past_shutdown():
                    logger.error(
                        "could not record %s, and the worker is stopping: given up; recovery "
                        "will take the job back (%s)",
                        what,
                        refusal_text(error),
                    )
                    return None
                delay = backoff.delay()
                logger.exception("could not record %s; retrying in %gs", what, delay)
                self._confirmed.clear()
                await self._until(self._confirmed, at_most=delay)

    def _past_shutdown(self) -> bool:
        """The worker was asked to stop and may no longer wait for the database."""
        left = self._shutdown_time_left()
        return left is not None and left <= 0

    def _shutdown_time_left(self) -> float | None:
        """Seconds a stopping worker may still spend on writes (``SHUTDOWN_TIMEOUT`` +
        :data:`WRITE_GRACE` from the stop request; none after a second signal), ``None``
        while it is not stopping."""
        if self._force.is_set():
            return 0.0
        if self._stop_requested_at is None:
            return None
        waited = time.monotonic() - self._stop_requested_at
        return self.settings.shutdown_timeout + WRITE_GRACE - waited

    async def _write_outcome(self, job: ClaimedJob, outcome: Outcome) -> bool:
        """Write what came of ``job``; if the database refuses its data (a result or an error
        it cannot store), write it again stripped of that data, so the job still ends."""
        try:
            return await self._write_outcome_as_is(job, outcome)
        except Exception as error:
            if not is_unstorable(error):
                raise
            logger.error(
                "the database refused the %s of job %s (%s): %s; storing a placeholder",
                "result" if outcome.succeeded else "error record",
                job.id,
                job.task_name,
                refusal_text(error),
            )
            return await self._write_outcome_as_is(job, stripped(outcome, error))

    async def _write_outcome_as_is(self, job: ClaimedJob, outcome: Outcome) -> bool:
        if outcome.succeeded:
            done = [(job.id, job.attempt, outcome.result_json)]
            return await self.backend.complete_jobs(job.claimed_by, done) == 1
        assert outcome.error is not None
        if outcome.cancelled:
            return await self.backend.cancel_running_job(
                job.claimed_by, job.id, job.attempt, outcome.error, outcome.result_json
            )
        if outcome.snooze_delay is not None:
            return await self.backend.snooze_job(
                job.claimed_by, job.id, job.attempt, outcome.snooze_delay, outcome.error
            )
        reason = outcome.dead_letter_reason
        if reason is None and job.attempt >= job.max_attempts:
            reason = "max_attempts"
        if reason is not None:
            applied = await self.backend.dead_letter_job(
                job.claimed_by, job.id, job.attempt, outcome.error, reason
            )
            if applied:
                # A job that discarded itself chose so: not an error.
                logger.log(
                    logging.INFO if reason == DISCARDED else logging.ERROR,
                    "job %s (%s) moved to dead letters (%s)",
                    job.id,
                    job.task_name,
                    reason,
                )
            return applied
        delay = outcome.retry_delay
        if delay is None:
            delay = retry_delay_seconds(self._spec(job), job.attempt)
        return await self.backend.retry_job(
            job.claimed_by, job.id, job.attempt, delay, outcome.error
        )

    # -- identity and helpers ---------------------------------------------------------------

    def _in_flight_ids(self) -> list[str]:
        ids = [job.id for job in self._running.values()] + [job.id for job in self._ready]
        ids.extend(self._unrecorded)
        if self._current is not None:
            ids.append(self._current.id)
        if self._writer is not None:
            ids.extend(self._writer.pending_ids())
        return ids

    def _take_new_identity(self) -> str:
        """After being presumed dead, carry on under a new id: the old id's jobs were
        recovered, so no write of this process may be mistaken for their new owner's. The
        jobs claimed under the old id and not started yet are dropped first: they are back in
        the queue, maybe already running elsewhere."""
        old = self.id
        self._drop_claims_of(old)
        # Recovered by others with the rest: not this worker's to give back any more.
        self._given_up = {
            task: job for task, job in self._given_up.items() if job.claimed_by != old
        }
        self.id = str(uuid.uuid4())
        logger.error("worker %s was presumed dead; continuing as %s", old, self.id)
        return self.id

    def _on_confirmed(self) -> None:
        self._confirmed.set()
        self._slot_freed.set()
        if self._writer is not None:
            self._writer.retry_now()

    def _fence(self) -> None:
        """The lease ran out with no heartbeat confirmed: other workers may soon find this one
        dead and run its jobs again. Nothing new starts (may_start() is false); running async
        jobs are cancelled now, before they can run twice at once; sync jobs cannot be
        interrupted, so their ``ctx.contact_lost`` is set (their outcome is fenced off if the
        job was taken back)."""
        runner = self._runner_in_use
        flagged = runner.flag_contact_lost() if runner is not None else 0
        cancelled = 0
        for task, job in list(self._running.items()):
            if task in self._executing and self._spec(job).is_async and not task.done():
                task.cancel()
                self._given_up[task] = job
                cancelled += 1
        if self._current is not None and self._spec(self._current).is_async:
            self._give_up_current.set()
            cancelled += 1
        if flagged or cancelled:
            logger.warning(
                "worker %s gave up its running jobs: %d async job(s) cancelled, %d sync job(s) "
                "told through ctx.contact_lost",
                self.id,
                cancelled,
                flagged - cancelled,
            )

    def _restore(self) -> None:
        """Contact is back and this worker was not presumed dead: what it cancelled is
        still claimed under its id; give it back to the queue, uncharged."""
        self._give_up_current.clear()
        given_up, self._given_up = self._given_up, {}
        if given_up:
            task = asyncio.ensure_future(self._release_given_up(given_up))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _release_given_up(self, given_up: dict[asyncio.Task[None], ClaimedJob]) -> None:
        # Their cancellation may still be unwinding; a job that swallowed it and runs on
        # records its own outcome instead.
        await asyncio.wait(given_up, timeout=1.0)
        await self._release([job for task, job in given_up.items() if task.cancelled()])

    def _doubt_identity(self, owner: str) -> None:
        """The database refused a write made under ``owner``: the job was taken back, as when
        this worker is presumed dead (or the write had applied on a first try whose reply was
        lost). Start nothing until a heartbeat tells; if it was presumed dead, the heartbeat
        gives it a new identity and the jobs claimed under the old one are dropped."""
        if self._liveness is not None and owner == self.id:
            self._liveness.doubt()

    def _drop_claims_of(self, owner: str) -> None:
        """Forget the jobs claimed under ``owner`` that have not started: that id was presumed
        dead, so they were taken back (recovered) and must not run here."""
        kept = [job for job in self._ready if job.claimed_by != owner]
        dropped = len(self._ready) - len(kept)
        if dropped:
            self._ready = deque(kept)
            logger.warning(
                "dropped %d claimed job(s) not started: worker %s no longer holds them",
                dropped,
                owner,
            )
        if self._liveness is not None:
            self._liveness.beat_soon()

    async def _claim_limited(
        self, runner: JobRunner, writer: ProgressWriter, concurrency: int, asked: int
    ) -> None:
        """A limited claim (see :class:`Claimer`); its jobs start first, their room being
        taken while they wait."""
        claimer = self._claimer
        assert claimer is not None
        try:
            jobs = await claimer.claim_limited(self.id, asked)
        except Exception as error:
            # The plain claim beside it reports (and backs off from) a database that is away.
            logger.warning("claiming limited jobs failed, trying again shortly: %s", error)
            return
        if not jobs:
            return
        if self._stopping.is_set():
            await self._release(jobs)  # the fetch loop is over: back to the queue
            return
        self._ready.extendleft(reversed(jobs))
        self._start_ready(runner, writer, concurrency)
        self._slot_freed.set()

    def _in_background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _make_claimer(self, queues: tuple[str, ...] | None, concurrency: int) -> Claimer:
        return Claimer(
            self.backend,
            self.registry,
            self.settings.queue_limits,
            queues,
            concurrency,
            self.settings.poll_interval,
        )

    def _limits_freed(self, job_ids: Sequence[str]) -> None:
        """The ends of ``job_ids`` were written: if one held a limit, claim again soon (the
        database now counts its room free)."""
        claimer = self._claimer
        if claimer is not None and claimer.finished(job_ids):
            self._wake.set()
            claimer.rearm()

    def _spec(self, job: ClaimedJob) -> JobSpec:
        spec = self.registry.get(job.task_name)
        # The claim only takes jobs whose names this worker registered.
        assert spec is not None, job.task_name
        return spec

    def _runner(self, threads: ThreadPoolExecutor, concurrency: int = 1) -> JobRunner:
        runner = JobRunner(
            worker_id=lambda: self.id,
            default_timeout=self.settings.job_timeout,
            threads=threads,
            hooks=self.hooks,
            sync_call_wrapper=self.sync_call_wrapper,
            message_limit=self.settings.error_message_limit,
            traceback_limit=self.settings.traceback_limit,
            max_result_bytes=self.settings.max_result_bytes,
            masked_names=self.settings.admin_masked_args,
            observer=self.observer,
        )
        self._runner_in_use = runner
        if self._writer is not None:
            writer = self._writer

            def thread_freed() -> None:
                self._start_ready(runner, writer, concurrency)
                self._slot_freed.set()

            runner.on_thread_freed = thread_freed
        return runner

    def _queues(self, queues: Sequence[str] | None) -> tuple[str, ...] | None:
        chosen = queues if queues is not None else self.settings.queues
        return tuple(chosen) if chosen else None

    def _info(self, queues: tuple[str, ...] | None, concurrency: int) -> WorkerInfo:
        return WorkerInfo(
            id=self.id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=queues,
            task_names=tuple(self.registry.names()),
            concurrency=concurrency,
            version=__version__,
        )

    async def _until(self, event: asyncio.Event, at_most: float | None) -> None:
        """Wait for ``event`` (or a stop request), ``at_most`` seconds."""
        if event is self._wake or event is self._slot_freed:
            # stop() sets these two as well: waiting on the event alone also hears a stop, and
            # costs no task (the fetch loop waits here after every batch of finished jobs).
            if at_most is None:
                await event.wait()
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(at_most):
                    await event.wait()
            return
        waiters = [
            asyncio.ensure_future(event.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        loop = asyncio.get_running_loop()
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError):
                pass

        def restore() -> None:
            for signum in installed:
                loop.remove_signal_handler(signum)

        return restore

    def _on_signal(self, signum: int) -> None:
        self._signals_received += 1
        if self._signals_received == 1:
            logger.info(
                "%s received: finishing running jobs (up to %gs); send it again to stop now",
                signal.Signals(signum).name,
                self.settings.shutdown_timeout,
            )
            self.stop()
        else:
            logger.warning("second signal: stopping now")
            self._force.set()

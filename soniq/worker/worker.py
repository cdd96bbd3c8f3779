"""The worker: claims jobs, runs them, records what happened, and shuts down cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from soniq.backends.base import WorkerBackend
from soniq.core.records import ClaimedJob, WorkerInfo
from soniq.core.registry import JobRegistry
from soniq.core.retry import retry_delay_seconds
from soniq.core.settings import SoniqSettings, build_settings
from soniq.core.spec import JobSpec
from soniq.worker.completions import CompletionWriter
from soniq.worker.execution import JobRunner, Outcome, SyncCallWrapper
from soniq.worker.hooks import Hooks, check_hooks
from soniq.worker.liveness import Liveness

logger = logging.getLogger("soniq.worker")

VERSION = "0.1.0"


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
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.settings = settings if settings is not None else build_settings()
        self.hooks = check_hooks(hooks)
        self.sync_call_wrapper = sync_call_wrapper
        self.id = str(uuid.uuid4())
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._running: dict[asyncio.Task[None], ClaimedJob] = {}
        self._processed = 0
        self._signals_received = 0

    # -- public API -------------------------------------------------------------------------

    async def run(
        self, concurrency: int = 4, run_once: bool = False, queues: list[str] | None = None
    ) -> bool:
        if run_once:
            return await self.run_once(queues=queues)
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        return await self._run_continuously(concurrency, self._queues(queues))

    async def run_once(self, queues: list[str] | None = None, max_jobs: int | None = None) -> bool:
        """Process due jobs one after another until none is left (or ``max_jobs`` ran)."""
        if max_jobs is not None and max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1, got {max_jobs}")
        scoped = self._queues(queues)
        names = self.registry.names()
        if not names:
            return False
        liveness = Liveness(
            self.backend, self._info(scoped, 1), self.settings, self._wake, listen=False
        )
        await liveness.start(with_session=False)
        ran = 0
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="soniq-job") as threads:
                runner = self._runner(threads)
                while max_jobs is None or ran < max_jobs:
                    jobs = await self.backend.claim_jobs(self.id, names, scoped, 1)
                    if not jobs:
                        break
                    [job] = jobs
                    outcome = await runner.run(self._spec(job), job)
                    await self._record(job, outcome, writer=None)
                    ran += 1
        finally:
            await liveness.stop()
        return ran > 0

    def stop(self) -> None:
        """Ask a running ``run()`` to finish gracefully (what SIGTERM does)."""
        self._stopping.set()
        self._wake.set()

    # -- continuous mode --------------------------------------------------------------------

    async def _run_continuously(self, concurrency: int, queues: tuple[str, ...] | None) -> bool:
        info = self._info(queues, concurrency)
        liveness = Liveness(
            self.backend, info, self.settings, self._wake, listen=self.settings.listen_notify
        )
        writer = CompletionWriter(
            lambda done: self.backend.complete_jobs(self.id, done),
            retry_delay=self.settings.error_retry_delay,
        )
        restore_signals = self._install_signal_handlers()
        await liveness.start()
        writer.start()
        logger.info(
            "worker %s started: concurrency %d, queues %s, %d job type(s)",
            self.id,
            concurrency,
            ",".join(queues) if queues else "all",
            len(self.registry),
        )
        try:
            with ThreadPoolExecutor(concurrency, thread_name_prefix="soniq-job") as threads:
                runner = self._runner(threads)
                await self._fetch_loop(runner, writer, concurrency, queues)
                await self._drain()
        finally:
            await writer.close(grace=self.settings.shutdown_timeout or None)
            await liveness.stop()
            restore_signals()
            logger.info("worker %s stopped after %d job(s)", self.id, self._processed)
        return self._processed > 0

    async def _fetch_loop(
        self,
        runner: JobRunner,
        writer: CompletionWriter,
        concurrency: int,
        queues: tuple[str, ...] | None,
    ) -> None:
        names = self.registry.names()
        while not self._stopping.is_set():
            free = concurrency - len(self._running)
            if free <= 0:
                self._slot_freed.clear()
                await self._until(self._slot_freed, at_most=None)
                continue
            # Cleared before the claim: a notification arriving during it wakes the next wait.
            self._wake.clear()
            try:
                jobs = await self.backend.claim_jobs(self.id, names, queues, free)
            except Exception:
                logger.exception(
                    "claiming jobs failed; retrying in %gs", self.settings.error_retry_delay
                )
                await self._until(self._stopping, at_most=self.settings.error_retry_delay)
                continue
            if not jobs:
                await self._until(self._wake, at_most=self.settings.poll_interval)
                continue
            for job in jobs:
                task = asyncio.create_task(self._work(runner, writer, job))
                self._running[task] = job

    async def _work(self, runner: JobRunner, writer: CompletionWriter, job: ClaimedJob) -> None:
        try:
            outcome = await runner.run(self._spec(job), job)
            await self._record(job, outcome, writer=writer)
        finally:
            self._running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._slot_freed.set()

    async def _drain(self) -> None:
        """Give running jobs ``shutdown_timeout`` to finish; cancel and requeue the rest."""
        if self._running:
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
        if leftovers:
            jobs = [(job.id, job.attempt) for job in leftovers.values()]
            try:
                released = await self.backend.release_jobs(self.id, jobs)
                logger.warning(
                    "%d job(s) did not finish in time; %d put back in the queue",
                    len(jobs),
                    released,
                )
            except Exception:
                logger.exception("could not put back %d interrupted job(s)", len(jobs))

    # -- recording outcomes -----------------------------------------------------------------

    async def _record(
        self, job: ClaimedJob, outcome: Outcome, *, writer: CompletionWriter | None
    ) -> None:
        self._processed += 1
        if outcome.succeeded:
            if writer is not None:
                writer.add(job.id, job.attempt, outcome.result_json)
            else:
                await self.backend.complete_jobs(
                    self.id, [(job.id, job.attempt, outcome.result_json)]
                )
            return
        assert outcome.error is not None
        await self._persist_failure(job, outcome.error)

    async def _persist_failure(self, job: ClaimedJob, error: dict[str, Any]) -> None:
        spec = self._spec(job)
        while True:
            try:
                if job.attempt >= job.max_attempts:
                    applied = await self.backend.dead_letter_job(
                        self.id, job.id, job.attempt, error, "max_attempts"
                    )
                    if applied:
                        logger.error("job %s (%s) moved to dead letters", job.id, job.task_name)
                else:
                    delay = retry_delay_seconds(spec, job.attempt)
                    run_at = datetime.now(UTC) + timedelta(seconds=delay)
                    applied = await self.backend.retry_job(
                        self.id, job.id, job.attempt, run_at, error
                    )
                if not applied:
                    logger.warning(
                        "job %s was taken back from this worker; outcome dropped", job.id
                    )
                return
            except Exception:
                logger.exception(
                    "could not record the failure of job %s; retrying in %gs",
                    job.id,
                    self.settings.error_retry_delay,
                )
                await asyncio.sleep(self.settings.error_retry_delay)

    # -- helpers ----------------------------------------------------------------------------

    def _spec(self, job: ClaimedJob) -> JobSpec:
        spec = self.registry.get(job.task_name)
        # The claim only takes jobs whose names this worker registered.
        assert spec is not None, job.task_name
        return spec

    def _runner(self, threads: ThreadPoolExecutor) -> JobRunner:
        return JobRunner(
            worker_id=self.id,
            default_timeout=self.settings.job_timeout,
            threads=threads,
            hooks=self.hooks,
            sync_call_wrapper=self.sync_call_wrapper,
        )

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
            version=VERSION,
        )

    async def _until(self, event: asyncio.Event, at_most: float | None) -> None:
        """Wait for ``event`` (or a stop request), ``at_most`` seconds."""
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

"""The ``Soniq`` application object: registry, settings and storage tied together."""

from __future__ import annotations

import inspect
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from soniq import _integration, waiting
from soniq.backends.base import BatchInserter, OperatorBackend, StorageBackend, WorkerBackend
from soniq.core.enqueue import EnqueueOptions, JobBuilder, Target, resolve_target
from soniq.core.errors import (
    ConfigurationError,
    EnqueueError,
    InvalidJobIdError,
    JobDefinitionError,
)
from soniq.core.operations import ActionResult, requester
from soniq.core.periodic import ScheduleDefinition, build_definition
from soniq.core.records import JobInfo, NewJob
from soniq.core.registry import JobRegistry
from soniq.core.settings import SoniqSettings, build_settings
from soniq.core.spec import JobSpec, build_job_spec, default_task_name
from soniq.job_function import JobFunction, attach_job_methods
from soniq.schedule_service import SchedulerService
from soniq.waiting import with_result_model
from soniq.worker.hooks import HOOK_EVENTS

P = ParamSpec("P")
R = TypeVar("R")


# Every Soniq instance alive in this process, so the worker commands can find "the" app.
instances: weakref.WeakSet[Soniq] = weakref.WeakSet()
# enqueue_many of more than twice this many jobs, on a backend that can, is built and written
# a batch at a time in one transaction: the database inserts a batch while the next is built,
# instead of waiting for all of them (building is about half of a 20,000-job call).
ENQUEUE_BATCH = 2000

JOB_PARAMETERS = frozenset(inspect.signature(build_job_spec).parameters) - {"func"}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _normalise_job_id(job_id: object) -> str:
    try:
        return str(job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id)))
    except ValueError:
        raise InvalidJobIdError(f"job id {job_id!r} is not a UUID") from None


def _normalise_job_ids(job_ids: Iterable[object]) -> list[str]:
    if isinstance(job_ids, (str, uuid.UUID)):
        raise InvalidJobIdError("pass a list of job ids, not a single id")
    return [_normalise_job_id(job_id) for job_id in job_ids]


def _target_label(target: object) -> str:
    """A task name for messages, whatever shape the target has."""
    for attribute in ("job_name", "name"):
        value = getattr(target, attribute, None)
        if isinstance(value, str):
            return value
    return target if isinstance(target, str) else repr(target)


class Soniq:
    """One application: the jobs it knows and the database they live in.

    ``Soniq(database_url="postgresql://...")`` talks to PostgreSQL through psycopg. Inside a
    Django project, ``Soniq()`` uses the Django database alias ``SONIQ["DATABASE"]`` (default
    ``"default"``), so a sync enqueue joins the caller's ``transaction.atomic()`` block.
    Any setting may be passed as a keyword argument (``Soniq(max_args_bytes=1024)``).
    """

    def __init__(self, database_url: str | None = None, **settings: Any) -> None:
        overrides = dict(settings)
        if database_url is not None:
            overrides["database_url"] = database_url
        # Fail at construction for bad keyword arguments, whatever the environment holds.
        build_settings(environ={}, overrides=overrides)
        self._overrides = overrides
        self.registry = JobRegistry()
        self.hooks: dict[str, list[Callable[..., Any]]] = {event: [] for event in HOOK_EVENTS}
        self._settings: SoniqSettings | None = None
        self._settings_source: object = None
        self._backend: StorageBackend | None = None
        self._backend_key: tuple[Any, ...] | None = None
        self._backend_lock = threading.Lock()
        # Backends replaced after a settings change; their pools are closed by close().
        self._retired_backends: list[StorageBackend] = []
        # Schedules declared with @app.periodic, synced by the scheduler when it starts.
        self.periodic_schedules: dict[str, ScheduleDefinition] = {}
        self._scheduler_service: SchedulerService | None = None
        instances.add(self)

    # -- settings and storage ---------------------------------------------------------------

    @property
    def settings(self) -> SoniqSettings:
        """The effective settings, re-read when Django's ``SONIQ`` dict is replaced
        (``override_settings`` works)."""
        source = _integration.django_soniq_settings()
        if self._settings is None or source is not self._settings_source:
            if source is not None and not isinstance(source, Mapping):
                raise ConfigurationError(
                    f"settings.SONIQ must be a dict, got {type(source).__name__}"
                )
            self._settings = build_settings(django_values=source, overrides=self._overrides)
            self._settings_source = source
        return self._settings

    @property
    def backend(self) -> StorageBackend:
        settings = self.settings
        key = (settings.database_url, settings.database, _integration.django_is_configured())
        with self._backend_lock:
            # One backend per configuration: two threads racing here must not each open a pool.
            if self._backend is None or key != self._backend_key:
                if self._backend is not None:
                    self._retired_backends.append(self._backend)
                self._backend = self._make_backend(settings)
                self._backend_key = key
            return self._backend

    def _make_backend(self, settings: SoniqSettings) -> StorageBackend:
        url = settings.database_url
        if url:
            if url.startswith("memory:"):
                from soniq.backends.memory import MemoryBackend
                from soniq.core import wakeup

                memory = MemoryBackend(settings=settings)
                # Wakes workers of this process (the only ones that can see these jobs).
                memory.on_insert.append(lambda queue: wakeup.notify([queue]))
                return memory
            if url.startswith("sqlite"):
                from soniq.backends.sqlite.backend import SQLiteBackend, path_from_url

                return SQLiteBackend(path_from_url(url), settings=settings)
            from soniq.backends.postgres import PostgresBackend

            return PostgresBackend(
                url, prepared_statements=settings.prepared_statements, settings=settings
            )
        if _integration.django_is_configured():
            from soniq.django_backend import DjangoBackend

            return DjangoBackend(settings.database)
        raise ConfigurationError(
            "soniq has no database: pass Soniq(database_url=...) (postgresql://..., "
            "sqlite:///file.db or memory://), set "
            "SONIQ_DATABASE_URL, or use soniq inside a configured Django project"
        )

    async def ensure_initialized(self) -> None:
        """Open the backend's connections now instead of on first use."""
        opener = getattr(self.backend, "open", None)
        if opener is not None:
            await opener()

    @property
    def scheduler(self) -> SchedulerService:
        """Schedules computed at run time: ``await app.scheduler.add(...)``, pause, resume,
        remove, list, get."""
        if self._scheduler_service is None:
            self._scheduler_service = SchedulerService(self)
        return self._scheduler_service

    def periodic(
        self,
        _func: Any = None,
        /,
        *,
        cron: Any = None,
        every: Any = None,
        timezone: str = "UTC",
        args: dict[str, Any] | None = None,
        catch_up: str = "latest",
        catch_up_window: float | None = None,
        **job_kwargs: Any,
    ) -> Callable[[Callable[P, R]], JobFunction[P, R]]:
        """Register a job that the scheduler fires on ``cron`` or ``every`` (exactly one).
        ``**job_kwargs`` are those of :meth:`job`; the schedule is keyed by the task name."""
        if _func is not None:
            raise JobDefinitionError("write @app.periodic(...) with parentheses")
        register = self.job(**job_kwargs)

        def decorate(func: Callable[P, R]) -> JobFunction[P, R]:
            name = job_kwargs.get("name") or default_task_name(func)
            # Validated before registering: a bad cron expression is refused right here.
            definition = build_definition(
                name=name,
                task_name=name,
                cron=cron,
                every=every,
                timezone=timezone,
                args=args,
                catch_up=catch_up,
                catch_up_window=catch_up_window,
            )
            job_function = register(func)
            # A dry run of the job a slot would enqueue: bad args fail here, not at 3 a.m.
            self.make_scheduled_job(definition, datetime.now(UTC))
            self.periodic_schedules[definition.name] = definition
            return job_function

        return decorate

    def make_scheduled_job(self, definition: ScheduleDefinition, slot: datetime) -> NewJob:
        """The job for one slot of a schedule: its args, queue and priority, due at the slot."""
        target = resolve_target(
            definition.task_name, self.registry, strict=self.settings.strict_enqueue
        )
        options = EnqueueOptions(
            priority=definition.priority, queue=definition.queue, scheduled_at=slot
        )
        return self._builder(target, options).build(definition.args)

    def make_scheduler(self, *, tick: float = 1.0) -> Any:
        """A :class:`soniq.scheduler.Scheduler` for this app's schedules."""
        from soniq.scheduler import Scheduler

        return Scheduler(
            self.scheduler.backend(),
            list(self.periodic_schedules.values()),
            self.make_scheduled_job,
            tick=tick,
            lease=self.settings.scheduler_lease,
            error_retry_delay=self.settings.error_retry_delay,
        )

    async def run_scheduler(self, *, tick: float = 1.0) -> None:
        """Run a scheduler in this process until SIGINT/SIGTERM."""
        try:
            await self.make_scheduler(tick=tick).run()
        finally:
            await self.scheduler.close()

    async def close(self) -> None:
        """Close the connection pools soniq opened (Django's connections are Django's)."""
        if self._scheduler_service is not None:
            await self._scheduler_service.close()
        backends, self._retired_backends = self._retired_backends, []
        if self._backend is not None:
            backends.append(self._backend)
            # The memory backend's jobs exist nowhere else: closing must not forget them.
            if not getattr(self._backend, "survives_close", False):
                self._backend = None
        for backend in backends:
            await backend.close()

    # -- running jobs -----------------------------------------------------------------------

    def worker_backend(self, concurrency: int) -> WorkerBackend:
        """A backend for a worker: the one ``DATABASE_URL`` names, or one on the database behind
        ``SONIQ["DATABASE"]`` (psycopg for PostgreSQL, sqlite3 for SQLite; never the ORM)."""
        settings = self.settings
        if settings.database_url and settings.database_url.startswith("memory:"):
            # Jobs live in this process only: the worker must use the app's own store.
            return self.backend  # type: ignore[return-value]
        if settings.database_url and settings.database_url.startswith("sqlite"):
            from soniq.backends.sqlite.backend import SQLiteBackend, path_from_url

            return SQLiteBackend(path_from_url(settings.database_url), settings=settings)
        if settings.database_url:
            from soniq.backends.postgres import PostgresBackend

            return PostgresBackend(
                settings.database_url,
                min_size=2,
                max_size=concurrency + 4,
                prepared_statements=settings.prepared_statements,
                settings=settings,
            )
        if _integration.django_is_configured():
            from soniq.django_worker import worker_backend

            return worker_backend(settings.database, concurrency, settings)
        raise ConfigurationError(
            "the worker has no database: pass Soniq(database_url=...) (postgresql://..., "
            "sqlite:///file.db or memory://) or set "
            "SONIQ_DATABASE_URL"
        )

    def make_worker(
        self,
        concurrency: int | None = None,
        *,
        extra_hooks: Mapping[str, Sequence[Callable[..., Any]]] | None = None,
        observer: Any = None,
    ) -> Any:
        """A :class:`soniq.worker.Worker` for this app's jobs (with Django's ORM hygiene and
        signals when running inside Django). ``extra_hooks`` are called after the app's own,
        for this worker only; ``observer`` (a :class:`soniq.worker.observer.JobObserver`, such
        as :class:`soniq.metrics.WorkerMetrics`) is told of the end of every attempt."""
        from soniq.worker import Worker

        settings = self.settings
        hooks = {event: list(callbacks) for event, callbacks in self.hooks.items()}
        for event, callbacks in (extra_hooks or {}).items():
            hooks.setdefault(event, []).extend(callbacks)  # an unknown event: Worker refuses it
        sync_call_wrapper = None
        if _integration.django_project():
            from soniq.django_worker import signal_hooks, with_fresh_connections

            for event, callbacks in signal_hooks(self).items():
                hooks[event].extend(callbacks)
            sync_call_wrapper = with_fresh_connections
        return Worker(
            self.worker_backend(concurrency or settings.concurrency),
            self.registry,
            settings,
            hooks,
            sync_call_wrapper=sync_call_wrapper,
            observer=observer,
        )

    async def run_worker(
        self,
        concurrency: int | None = None,
        run_once: bool = False,
        queues: list[str] | None = None,
        *,
        metrics_port: int | None = None,
        metrics_database: str | None = None,
    ) -> bool:
        """Run a worker in this process; True when any job ran. ``concurrency`` defaults to
        the ``CONCURRENCY`` setting (4). ``metrics_port``: serve Prometheus metrics on that
        port meanwhile (:mod:`soniq.metrics`, the ``prometheus`` extra), with the queue
        gauges read through the Django database alias ``metrics_database`` (by default the
        app's own Django database, when it has one)."""
        metrics = None
        if metrics_port is not None:
            from soniq.metrics import WorkerMetrics

            metrics = WorkerMetrics()  # refuses at once without prometheus_client
        worker = self.make_worker(concurrency, observer=metrics)
        try:
            if metrics is not None and metrics_port is not None:
                metrics.serve(worker, metrics_port, self, metrics_database)
            ran: bool = await worker.run(
                concurrency=concurrency or self.settings.concurrency,
                run_once=run_once,
                queues=queues,
            )
        finally:
            if metrics is not None:
                metrics.stop()
            await worker.backend.close()
        return ran

    # -- defining jobs ----------------------------------------------------------------------

    def job(
        self, _func: Any = None, /, **params: Any
    ) -> Callable[[Callable[P, R]], JobFunction[P, R]]:
        """Register a function as a job: ``@app.job()``, ``@app.job(queue="emails")``."""
        if _func is not None:
            raise JobDefinitionError(
                "write @app.job() with parentheses (and parameters as keywords)"
            )

        unknown = sorted(set(params) - JOB_PARAMETERS)
        if unknown:
            raise JobDefinitionError(
                f"@app.job() got unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(JOB_PARAMETERS))}"
            )

        def decorate(func: Callable[P, R]) -> JobFunction[P, R]:
            spec = build_job_spec(func, **params)
            self.registry.register(spec)
            return attach_job_methods(self, spec)

        return decorate

    # -- building jobs ----------------------------------------------------------------------

    def _builder(self, target: Target, opts: EnqueueOptions) -> JobBuilder:
        return JobBuilder(target, opts, max_args_bytes=self.settings.max_args_bytes, now=_utc_now())

    def _spec_target(self, spec: JobSpec) -> Target:
        return resolve_target(spec.func, self.registry, strict=False)

    def _check_options(self, spec: JobSpec, opts: EnqueueOptions) -> None:
        """Raise :class:`InvalidOptionError` if ``opts`` are bad for ``spec``."""
        self._builder(self._spec_target(spec), opts)

    def _prepare(
        self,
        target: object,
        args: Mapping[str, Any] | None,
        func_kwargs: dict[str, Any],
        opts: EnqueueOptions,
    ) -> NewJob:
        resolved = resolve_target(target, self.registry, strict=self.settings.strict_enqueue)
        if resolved.by_callable:
            if args is not None:
                raise EnqueueError(
                    f"{resolved.name}: pass the job's arguments as keyword arguments when "
                    "enqueueing a function, not args=; if the job has a parameter named like an "
                    "enqueue option, use job.enqueue(...) or job.using(...).enqueue(...)",
                    job_name=resolved.name,
                    argument="args",
                )
            values: Mapping[str, Any] | None = func_kwargs
        else:
            if func_kwargs:
                raise EnqueueError(
                    f"{resolved.name}: when enqueueing by name or TaskRef, pass the job's "
                    f"arguments in args={{...}}; got unexpected keyword(s) "
                    f"{', '.join(sorted(func_kwargs))}",
                    job_name=resolved.name,
                    argument=sorted(func_kwargs)[0],
                )
            values = args
        return self._builder(resolved, opts).build(values)

    def _many_builder(
        self, target: object, args_list: Iterable[Mapping[str, Any]], opts: EnqueueOptions
    ) -> JobBuilder:
        """The builder of an ``enqueue_many`` call, its target and options checked."""
        resolved = resolve_target(target, self.registry, strict=self.settings.strict_enqueue)
        if resolved.unique:
            raise EnqueueError(
                f"{resolved.name} is declared unique=True, which enqueue_many() does not "
                "support; call enqueue() for each job instead",
                job_name=resolved.name,
                argument="unique",
            )
        if isinstance(args_list, (Mapping, str, bytes)):
            raise EnqueueError(
                f"{resolved.name}: args_list must be a list of dicts, got "
                f"{type(args_list).__name__}",
                job_name=resolved.name,
                argument="args_list",
            )
        return self._builder(resolved, opts)

    def _prepare_many(
        self, target: object, args_list: Iterable[Mapping[str, Any]], opts: EnqueueOptions
    ) -> list[NewJob]:
        return _build_rows(self._many_builder(target, args_list, opts), args_list)

    def _prepare_in_batches(
        self, target: object, args_list: Sequence[Mapping[str, Any]], opts: EnqueueOptions
    ) -> Iterator[list[NewJob]]:
        """:meth:`_prepare_many` a batch at a time: the target and options are checked now,
        before any connection is taken, and each row when its batch is reached, so that the
        backend writes one batch while the next is built."""
        builder = self._many_builder(target, args_list, opts)
        return (
            _build_rows(builder, args_list[start : start + ENQUEUE_BATCH], start)
            for start in range(0, len(args_list), ENQUEUE_BATCH)
        )

    # -- enqueueing -------------------------------------------------------------------------

    async def enqueue(
        self,
        target: object,
        *,
        args: Mapping[str, Any] | None = None,
        priority: int | None = None,
        queue: str | None = None,
        scheduled_at: Any = None,
        unique: bool | None = None,
        dedup_key: str | None = None,
        lock: str | None = None,
        connection: Any = None,
        **func_kwargs: Any,
    ) -> str:
        """Enqueue one job; returns its id (a live duplicate's id for a deduplicated job)."""
        opts = EnqueueOptions(priority, queue, scheduled_at, unique, dedup_key, lock)
        job = self._prepare(target, args, func_kwargs, opts)
        [job_id] = await self.backend.insert_jobs([job], connection=connection)
        return job_id

    def enqueue_sync(
        self,
        target: object,
        *,
        args: Mapping[str, Any] | None = None,
        priority: int | None = None,
        queue: str | None = None,
        scheduled_at: Any = None,
        unique: bool | None = None,
        dedup_key: str | None = None,
        lock: str | None = None,
        connection: Any = None,
        **func_kwargs: Any,
    ) -> str:
        """The sync twin of :meth:`enqueue`; inside Django it joins the current transaction."""
        opts = EnqueueOptions(priority, queue, scheduled_at, unique, dedup_key, lock)
        job = self._prepare(target, args, func_kwargs, opts)
        [job_id] = self.backend.insert_jobs_sync([job], connection=connection)
        return job_id

    async def _submit(
        self, spec: JobSpec, kwargs: Mapping[str, Any], opts: EnqueueOptions, connection: Any
    ) -> str:
        """Enqueue a registered job with every keyword a job argument (``job.aenqueue``)."""
        job = self._builder(self._spec_target(spec), opts).build(kwargs)
        [job_id] = await self.backend.insert_jobs([job], connection=connection)
        return job_id

    def _submit_sync(
        self, spec: JobSpec, kwargs: Mapping[str, Any], opts: EnqueueOptions, connection: Any
    ) -> str:
        """The sync twin of :meth:`submit` (``job.enqueue``)."""
        job = self._builder(self._spec_target(spec), opts).build(kwargs)
        [job_id] = self.backend.insert_jobs_sync([job], connection=connection)
        return job_id

    async def enqueue_many(
        self,
        target: object,
        args_list: Sequence[Mapping[str, Any]],
        *,
        queue: str | None = None,
        priority: int | None = None,
        scheduled_at: Any = None,
        lock: str | None = None,
        connection: Any = None,
    ) -> list[str]:
        """Enqueue one job per args dict; ids in input order. On PostgreSQL one statement, or
        for more than ``2 * ENQUEUE_BATCH`` rows one per batch in one transaction, each
        written while the next is built.

        One bad row and nothing is inserted.
        """
        opts = EnqueueOptions(priority, queue, scheduled_at, lock=lock)
        backend = self.backend
        if (
            isinstance(args_list, (list, tuple))
            and len(args_list) > 2 * ENQUEUE_BATCH
            and lock is None
            and isinstance(backend, BatchInserter)
        ):
            batches = self._prepare_in_batches(target, args_list, opts)
            return await backend.insert_job_batches(batches, connection=connection)
        jobs = self._prepare_many(target, args_list, opts)
        if not jobs:
            return []
        return await backend.insert_jobs(jobs, connection=connection)

    def enqueue_many_sync(
        self,
        target: object,
        args_list: Sequence[Mapping[str, Any]],
        *,
        queue: str | None = None,
        priority: int | None = None,
        scheduled_at: Any = None,
        lock: str | None = None,
        connection: Any = None,
    ) -> list[str]:
        """The sync twin of :meth:`enqueue_many`."""
        jobs = self._prepare_many(
            target, args_list, EnqueueOptions(priority, queue, scheduled_at, lock=lock)
        )
        if not jobs:
            return []
        return self.backend.insert_jobs_sync(jobs, connection=connection)

    async def schedule(
        self,
        target: object,
        run_at: Any,
        *,
        args: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> str:
        """Enqueue to run at ``run_at``: an aware datetime, or seconds (or a timedelta) from now."""
        if run_at is None:
            raise EnqueueError(
                "schedule() needs run_at; use enqueue() to run now",
                job_name=_target_label(target),
                argument="run_at",
            )
        return await self.enqueue(target, args=args, scheduled_at=run_at, **kwargs)

    def schedule_sync(
        self,
        target: object,
        run_at: Any,
        *,
        args: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> str:
        """The sync twin of :meth:`schedule`."""
        if run_at is None:
            raise EnqueueError(
                "schedule_sync() needs run_at; use enqueue_sync() to run now",
                job_name=_target_label(target),
                argument="run_at",
            )
        return self.enqueue_sync(target, args=args, scheduled_at=run_at, **kwargs)

    # -- inspecting -------------------------------------------------------------------------

    async def get_job(self, job_id: str | uuid.UUID, *, result_model: Any = None) -> JobInfo | None:
        """The job's state, or ``None`` if no job (nor dead letter) has this id.
        ``result_model`` (a pydantic model, or any type pydantic validates) turns a finished
        job's stored result into that type (:class:`ResultValidationError` if it does not
        fit)."""
        info = await self.backend.get_job(_normalise_job_id(job_id))
        return None if info is None else with_result_model(info, result_model)

    def get_job_sync(self, job_id: str | uuid.UUID, *, result_model: Any = None) -> JobInfo | None:
        """The sync twin of :meth:`get_job`."""
        info = self.backend.get_job_sync(_normalise_job_id(job_id))
        return None if info is None else with_result_model(info, result_model)

    async def wait_for(
        self,
        job_id: str | uuid.UUID,
        *,
        # A parameter, as in asyncio.wait_for and Celery's get(): the same call in both twins.
        timeout: float | None = None,  # noqa: ASYNC109
        result_model: Any = None,
    ) -> JobInfo:
        """Wait until the job ends and return its :class:`JobInfo` (done, its result as
        ``result_model`` if given). Raises :class:`JobFailedError` (with its error history)
        when it ends in the dead letters, :class:`JobCancelledError` when it is cancelled,
        :class:`JobNotFoundError` for an unknown id, and ``TimeoutError`` after ``timeout``
        seconds (``None``: no limit). On PostgreSQL the job's end is announced to the waiter
        (LISTEN/NOTIFY); elsewhere, and with ``LISTEN_NOTIFY`` off, it polls."""
        return await waiting.wait_for(self, _normalise_job_id(job_id), timeout, result_model)

    def wait_for_sync(
        self,
        job_id: str | uuid.UUID,
        *,
        timeout: float | None = None,
        result_model: Any = None,
    ) -> JobInfo:
        """The sync twin of :meth:`wait_for` (it blocks the calling thread)."""
        return waiting.wait_for_sync(self, _normalise_job_id(job_id), timeout, result_model)

    # -- operator actions (what the admin's buttons do) -----------------------------------

    def _operator(self) -> OperatorBackend:
        backend = self.backend
        if not isinstance(backend, OperatorBackend):
            raise ConfigurationError(
                f"{type(backend).__name__} does not support operator actions "
                "(retry, cancel, requeue, delete)"
            )
        return backend

    async def retry_jobs(self, job_ids: Iterable[str | uuid.UUID]) -> ActionResult:
        """Run now: queued jobs become due, cancelled jobs and dead letters go back to the
        queue (a dead letter with its full attempts again). Running and done jobs are refused;
        ``ActionResult.refused`` says why for each."""
        return await self._operator().retry_jobs(_normalise_job_ids(job_ids))

    def retry_jobs_sync(self, job_ids: Iterable[str | uuid.UUID]) -> ActionResult:
        return self._operator().retry_jobs_sync(_normalise_job_ids(job_ids))

    async def cancel_jobs(
        self, job_ids: Iterable[str | uuid.UUID], *, abort: bool = False, by: str | None = None
    ) -> ActionResult:
        """Cancel queued jobs. A running job is refused, unless ``abort=True``: then its abort
        is requested, and the worker running it stops it within about a second (an async job
        is cancelled, a sync one sees ``ctx.abort_requested``) and ends it ``cancelled``.
        ``by`` says who asks (recorded with the request; ``user@host`` by default). Finished
        jobs are refused; ``ActionResult.refused`` says why for each."""
        ids = _normalise_job_ids(job_ids)
        if abort:
            return await self._operator().abort_jobs(ids, requester(by))
        return await self._operator().cancel_jobs(ids)

    def cancel_jobs_sync(
        self, job_ids: Iterable[str | uuid.UUID], *, abort: bool = False, by: str | None = None
    ) -> ActionResult:
        """The sync twin of :meth:`cancel_jobs`."""
        ids = _normalise_job_ids(job_ids)
        if abort:
            return self._operator().abort_jobs_sync(ids, requester(by))
        return self._operator().cancel_jobs_sync(ids)

    async def requeue_dead_letters(self, job_ids: Iterable[str | uuid.UUID]) -> ActionResult:
        """Move dead letters back to the queue: same id, error history kept, attempts reset."""
        return await self._operator().requeue_dead_letters(_normalise_job_ids(job_ids))

    def requeue_dead_letters_sync(self, job_ids: Iterable[str | uuid.UUID]) -> ActionResult:
        return self._operator().requeue_dead_letters_sync(_normalise_job_ids(job_ids))

    async def delete_dead_letters(self, job_ids: Iterable[str | uuid.UUID]) -> ActionResult:
        return await self._operator().delete_dead_letters(_normalise_job_ids(job_ids))

    def delete_dead_letters_sync(self, job_ids: Iterable[str | uuid.UUID]) -> ActionResult:
        return self._operator().delete_dead_letters_sync(_normalise_job_ids(job_ids))


def _build_rows(
    builder: JobBuilder, args_list: Iterable[Mapping[str, Any]], start: int = 0
) -> list[NewJob]:
    """One job per args dict, each named by its position in the caller's ``args_list``."""
    return [
        builder.build(args, where=f"args_list[{start + offset}]")
        for offset, args in enumerate(args_list)
    ]

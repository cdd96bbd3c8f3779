"""soniq as a backend of Django's task framework (``django.tasks``, Django 6.0 and newer).

    TASKS = {"default": {"BACKEND": "soniq.tasks.SoniqBackend", "QUEUES": [...], "OPTIONS": {...}}}

A ``@task`` enqueued through this backend is a row of ``soniq_jobs``, written on Django's
connection to ``SONIQ["DATABASE"]`` (so it commits or rolls back with the caller's
``transaction.atomic()``), and ``TaskResult.id`` is that job's id. ``manage.py soniq_worker``
runs it like any soniq job: fenced completion, retries, dead letters, crash recovery, the admin.

The row's task name is the task's ``module_path`` and its arguments are stored as
``{"args": [...], "kwargs": {...}}``. A worker serves the tasks its process has imported (each
installed app's ``tasks`` module); reading a result looks its task up among those too. Nothing
is ever imported, nor called, because a row names it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from inspect import iscoroutinefunction
from traceback import format_exception
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

try:
    from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, TaskError
    from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError as exc:  # Django 5.2: no task framework

    class TaskFrameworkMissing(ImproperlyConfigured, ImportError):
        """An ``ImportError`` too, for code that imports this module optionally."""

    raise TaskFrameworkMissing(
        "soniq.tasks.SoniqBackend is a backend of django.tasks, which needs Django 6.0 or "
        f"newer; this project runs Django {django.get_version()}. On Django 5.2, declare jobs "
        "with @app.job() instead."
    ) from exc
from django.utils.json import normalize_json
from django.utils.module_loading import autodiscover_modules

from soniq.app import Soniq
from soniq.core import codec, options
from soniq.core.context import JobContext
from soniq.core.control import ends_the_job
from soniq.core.enqueue import EnqueueOptions, JobBuilder, Target
from soniq.core.errors import ArgumentsNotSerializableError, JobDefinitionError
from soniq.core.records import JobInfo, NewJob
from soniq.core.settings import QUEUE_NAME_RULE, build_settings, is_valid_queue_name
from soniq.core.spec import JobSpec, build_job_spec
from soniq.core.status import JobStatus

__all__ = [
    "SoniqBackend",
    "SoniqTask",
    "django_priority",
    "soniq_priority",
]

# -- priorities -------------------------------------------------------------------------------
# Django: -100 .. 100, larger first, default 0. soniq: 1 .. 1000, smaller first, default 100.
# Strictly monotonic both ways: 100 -> 1, 1 -> 100, 0 -> 101, -1 -> 110, -100 -> 1000. The
# positive half takes one soniq step per Django step; the negative half spreads over the rest.
_ZERO = 101
_NEGATIVE_SPAN = options.MAX_PRIORITY - _ZERO  # 899


def soniq_priority(priority: int) -> int:
    """The soniq priority a Django task priority is stored with (Django also accepts a whole
    float, ``5.0``)."""
    priority = int(priority)
    if priority >= 0:
        return _ZERO - priority
    return _ZERO + -(priority * _NEGATIVE_SPAN // TASK_MAX_PRIORITY)  # ceil(-p * 8.99)


def django_priority(priority: int) -> int:
    """The Django priority of a stored soniq priority (the inverse of :func:`soniq_priority`
    on its values; any other soniq priority maps to the nearest Django one)."""
    if priority <= _ZERO:
        return min(TASK_MAX_PRIORITY, _ZERO - priority)
    steps = round((priority - _ZERO) * TASK_MAX_PRIORITY / _NEGATIVE_SPAN)
    return max(TASK_MIN_PRIORITY, -steps)


# -- per-task options --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SoniqTask(Task):  # type: ignore[type-arg]
    """The task class of :class:`SoniqBackend`: ``@task(max_attempts=3, timeout=60)``.

    Each option left ``None`` takes the backend's ``OPTIONS`` value, and without one soniq's
    default for ``django.tasks``: one attempt (Django's semantics), no retry delay, the
    ``JOB_TIMEOUT`` setting as the time limit.
    """

    max_attempts: int | None = None
    retry_delay: float | Sequence[float] | None = None
    retry_backoff: bool | None = None
    retry_max_delay: float | None = None
    timeout: float | None = None


# OPTIONS key -> (SoniqTask field, default).
_OPTION_KEYS: dict[str, tuple[str, Any]] = {
    "MAX_ATTEMPTS": ("max_attempts", 1),
    "RETRY_DELAY": ("retry_delay", 0),
    "RETRY_BACKOFF": ("retry_backoff", False),
    "RETRY_MAX_DELAY": ("retry_max_delay", None),
    "TIMEOUT": ("timeout", None),
}
_DEFAULTS = {field: default for field, default in _OPTION_KEYS.values()}


# -- the tasks this process knows ----------------------------------------------------------------

_known: dict[str, Task[Any, Any]] = {}
_known_lock = threading.Lock()


def _remember(task: Task[Any, Any]) -> None:
    """Keep the first task seen under its path: ``task.using(...)`` copies it with other
    defaults, and must not replace it (a reloaded module's new function does)."""
    with _known_lock:
        existing = _known.get(task.module_path)
        if existing is None or existing.func is not task.func:
            _known[task.module_path] = task


def known_tasks() -> list[Task[Any, Any]]:
    """Every ``django.tasks`` task on a soniq backend that this process has imported."""
    with _known_lock:
        return list(_known.values())


def _task_named(name: str) -> Task[Any, Any] | None:
    """The task stored under ``name``, among the tasks this process knows, after importing
    the installed apps' ``tasks`` modules once if need be. Nothing a row names is imported."""
    with _known_lock:
        task = _known.get(name)
    if task is None:
        _import_tasks_modules()
        with _known_lock:
            task = _known.get(name)
    return task


@functools.cache
def _import_tasks_modules() -> None:
    autodiscover_modules("tasks")


# -- the app tasks are stored through ------------------------------------------------------------

_default_app: Soniq | None = None
_default_app_lock = threading.Lock()


def default_app() -> Soniq:
    """The app tasks are written through when ``SONIQ["APP"]`` names none: a ``Soniq()`` on
    ``SONIQ["DATABASE"]``, created once per process."""
    global _default_app
    with _default_app_lock:
        if _default_app is None:
            _default_app = Soniq()
        return _default_app


_resolved: tuple[object, Soniq] | None = None


def project_app() -> Soniq:
    """``SONIQ["APP"]`` if set, else :func:`default_app`; looked up again when the ``SONIQ``
    dict is replaced (``override_settings``)."""
    global _resolved
    from django.conf import settings

    from soniq import _discovery

    source = getattr(settings, "SONIQ", None)
    resolved = _resolved
    if resolved is not None and resolved[0] is source:
        return resolved[1]
    path = build_settings(django_values=source).app
    app = _discovery.load_app(path) if path else default_app()
    _resolved = (source, app)
    return app


def worker_app(path: str | None) -> Soniq:
    """The app a worker runs, with every known task installed on it: ``path`` (``--app``,
    ``SONIQ["APP"]``), else the single app with jobs, else (tasks only) :func:`default_app`."""
    from soniq import _discovery
    from soniq.app import instances

    if path:
        app = _discovery.choose_app(path)
    else:
        # soniq's own app counts only when nothing else has jobs: once tasks are installed on
        # it, it must not make a project app with jobs look like one of two.
        others = [app for app in list(instances) if len(app.registry) and app is not _default_app]
        if len(others) == 1:
            app = others[0]
        elif not others and known_tasks():
            app = default_app()
        else:
            app = _discovery.choose_app(None)  # none or several: its message says what to do
    install(app)
    return app


def install(app: Soniq) -> None:
    """Register every known task on ``app``, so its worker claims and runs them."""
    for task in known_tasks():
        app.registry.register(_spec(task))


# -- the backend -------------------------------------------------------------------------------


class SoniqBackend(BaseTaskBackend):
    """A ``django.tasks`` backend storing tasks as soniq jobs."""

    task_class = SoniqTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        if not isinstance(self.options, Mapping):
            raise InvalidTaskBackend(f"TASKS[{alias!r}]['OPTIONS'] must be a dict")
        unknown = sorted(set(self.options) - set(_OPTION_KEYS))
        if unknown:
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown key(s) {', '.join(unknown)}; "
                f"soniq knows {', '.join(_OPTION_KEYS)}"
            )
        for queue in sorted(self.queues):
            if not is_valid_queue_name(queue):
                raise InvalidTaskBackend(
                    f"TASKS[{alias!r}]['QUEUES'] holds {queue!r}, not a valid soniq queue name"
                )
        self.defaults = {
            field: self.options.get(key, default) for key, (field, default) in _OPTION_KEYS.items()
        }
        # A bad OPTIONS value fails here, at start-up, not at a task's first enqueue.
        try:
            _build_spec(_noop, "soniq.tasks.options_check", self.defaults)
        except JobDefinitionError as exc:
            raise InvalidTaskBackend(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from None

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        found = list(super().check(**kwargs))
        if not apps.is_installed("soniq"):
            found.append(
                checks.Error(
                    f"TASKS[{self.alias!r}] uses soniq.tasks.SoniqBackend, but 'soniq' is not "
                    "in INSTALLED_APPS",
                    hint="Add 'soniq' to INSTALLED_APPS and run manage.py migrate: tasks are "
                    "stored in soniq's tables.",
                    id="soniq.E005",
                )
            )
        return found

    def _check(self, task: Task[Any, Any]) -> None:
        """Django's checks, and the queue name by soniq's rule (``QUEUES`` may be empty,
        which lets Django accept any name)."""
        super().validate_task(task)
        if not is_valid_queue_name(task.queue_name):
            raise InvalidTask(
                f"Queue {task.queue_name!r} is not a valid soniq queue name ({QUEUE_NAME_RULE})."
            )

    def validate_task(self, task: Task[Any, Any]) -> None:
        self._check(task)
        _spec(task, self)  # the per-task options, checked at decoration
        _remember(task)

    # -- enqueue ----------------------------------------------------------------------------

    def _job(self, task: Task[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> NewJob:
        # Checked again, as Django's own backends do (the settings may have changed since the
        # task was made). Its own options were checked at decoration, the backend's at start-up.
        self._check(task)
        _remember(task)
        app = project_app()
        target = Target(
            name=task.module_path,
            spec=None,
            args_model=None,
            queue=task.queue_name,
            priority=soniq_priority(task.priority),
            max_attempts=_options(task, self)["max_attempts"],
            unique=False,
            by_callable=False,
        )
        builder = JobBuilder(
            target,
            EnqueueOptions(scheduled_at=task.run_after),
            max_args_bytes=app.settings.max_args_bytes,
            now=datetime.now(UTC),
        )
        values = {"args": list(args), "kwargs": dict(kwargs)}
        for part in ("args", "kwargs"):  # checked apart, for messages that name args[0]
            try:
                codec.check_json(values[part], part)
            except codec.NotJSONError as exc:
                raise ArgumentsNotSerializableError(
                    f"{task.module_path}: argument {exc}",
                    job_name=task.module_path,
                    argument=exc.path,
                ) from None
        return builder.build(values)

    def _enqueued(self, task: Task[Any, Any], job: NewJob, job_id: str) -> TaskResult[Any, Any]:
        return _result(
            task,
            job_id,
            status=TaskResultStatus.READY,
            args=job.args["args"],
            kwargs=job.args["kwargs"],
            enqueued_at=datetime.now(UTC),
        )

    def enqueue(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> TaskResult[Any, Any]:
        job = self._job(task, args, kwargs)
        [job_id] = project_app().backend.insert_jobs_sync([job])
        result = self._enqueued(task, job, job_id)
        task_enqueued.send(type(self), task_result=result)
        return result

    async def aenqueue(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> TaskResult[Any, Any]:
        job = self._job(task, args, kwargs)
        [job_id] = await project_app().backend.insert_jobs([job])
        result = self._enqueued(task, job, job_id)
        # Receivers are sync code (the ORM, say): asend runs them off the event loop.
        await task_enqueued.asend(type(self), task_result=result)
        return result

    # -- results ----------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult[Any, Any]:
        return _from_info(result_id, project_app().get_job_sync(_job_id(result_id)))

    async def aget_result(self, result_id: str) -> TaskResult[Any, Any]:
        return _from_info(result_id, await project_app().get_job(_job_id(result_id)))


def _noop() -> None:
    return None


def _job_id(result_id: object) -> str:
    try:
        return str(uuid.UUID(str(result_id)))
    except ValueError:
        raise TaskResultDoesNotExist(f"{result_id!r} is not a task result id") from None


# -- the job a task becomes ----------------------------------------------------------------------


def _build_spec(func: Callable[..., Any], name: str, values: Mapping[str, Any]) -> JobSpec:
    max_attempts = values["max_attempts"]
    if type(max_attempts) is not int or max_attempts < 1:
        raise JobDefinitionError(f"{name}: max_attempts must be a whole number ≥ 1")
    delay = values["retry_delay"]
    return build_job_spec(
        func,
        name=name,
        retries=max_attempts - 1,
        retry_delay=list(delay) if isinstance(delay, (list, tuple)) else delay,
        retry_backoff=values["retry_backoff"],
        retry_max_delay=values["retry_max_delay"],
        timeout=values["timeout"],
    )


def _options(task: Task[Any, Any], backend: SoniqBackend | None = None) -> dict[str, Any]:
    """``task``'s own options over its backend's defaults."""
    owner = backend if backend is not None else task.get_backend()
    values = dict(owner.defaults if isinstance(owner, SoniqBackend) else _DEFAULTS)
    for field in values:
        own = getattr(task, field, None)
        if own is not None:
            values[field] = own
    return values


def _spec(task: Task[Any, Any], backend: SoniqBackend | None = None) -> JobSpec:
    """The soniq job spec of ``task``: its options, run by an adapter that unpacks
    ``{"args", "kwargs"}`` and supplies the ``TaskContext``."""
    try:
        return _build_spec(_adapter(task), task.module_path, _options(task, backend))
    except JobDefinitionError as exc:
        raise InvalidTask(str(exc)) from None


def _adapter(task: Task[Any, Any]) -> Callable[..., Any]:
    """The function the worker calls for ``task``'s jobs: sync tasks in its thread pool (with
    Django's connection hygiene), async ones on its loop. It sends Django's ``task_started``
    and ``task_finished`` around the call, as soniq's own job signals are sent."""
    if iscoroutinefunction(task.func):

        async def run_async(args: list[Any], kwargs: dict[str, Any], ctx: JobContext) -> Any:
            history = await sync_to_async(_history)(ctx) if ctx.attempt > 1 else None
            result = _running(task, ctx, args, kwargs, history)
            sender = type(task.get_backend())
            await task_started.asend(sender, task_result=result)
            try:
                value = _stored_value(await task.func(*_positional(task, result, args), **kwargs))
            except Exception as exc:
                if ends_the_job(None, exc, ctx.attempt, ctx.max_attempts, ctx.snoozes):
                    await task_finished.asend(sender, task_result=_failed(result, exc))
                raise
            await task_finished.asend(sender, task_result=_succeeded(result, value))
            return value

        return run_async

    def run_sync(args: list[Any], kwargs: dict[str, Any], ctx: JobContext) -> Any:
        history = _history(ctx) if ctx.attempt > 1 else None
        result = _running(task, ctx, args, kwargs, history)
        sender = type(task.get_backend())
        task_started.send(sender, task_result=result)
        try:
            value = _stored_value(task.func(*_positional(task, result, args), **kwargs))
        except Exception as exc:
            if ends_the_job(None, exc, ctx.attempt, ctx.max_attempts, ctx.snoozes):
                task_finished.send(sender, task_result=_failed(result, exc))
            raise
        task_finished.send(sender, task_result=_succeeded(result, value))
        return value

    return run_sync


def _stored_value(value: Any) -> Any:
    """A return value as Django's database backends store it: ``normalize_json``, then a JSON
    round trip (``{1: "a"}`` comes back ``{"1": "a"}``). What JSON cannot hold fails the
    attempt (``TypeError``), as it does on Django's own backends."""
    return json.loads(json.dumps(normalize_json(value)))


def _history(ctx: JobContext) -> JobInfo | None:
    """The job as stored, for a retry's ``TaskResult`` (its earlier errors). Read on Django's
    connection: in a worker, one past use is first dropped if it broke (a server restart), as
    Django does between requests; inside a test's transaction it is left alone."""
    app = project_app()
    connection = connections[app.settings.database]
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()
    return app.get_job_sync(ctx.job_id)


def _positional(task: Task[Any, Any], result: TaskResult[Any, Any], args: list[Any]) -> list[Any]:
    return [TaskContext(task_result=result), *args] if task.takes_context else args


def _has_history(task: Task[Any, Any], ctx: JobContext) -> bool:
    """Whether the running attempt's ``TaskResult`` needs the job's earlier errors: read (one
    query) only for a task that takes the context, on a retry."""
    return task.takes_context and ctx.attempt > 1


def _running(
    task: Task[Any, Any],
    ctx: JobContext,
    args: list[Any],
    kwargs: dict[str, Any],
    history: JobInfo | None,
) -> TaskResult[Any, Any]:
    now = datetime.now(UTC)
    errors = history.errors if history is not None else []
    return _result(
        task,
        ctx.job_id,
        status=TaskResultStatus.RUNNING,
        args=args,
        kwargs=kwargs,
        enqueued_at=ctx.created_at,
        started_at=now,
        last_attempted_at=now,
        errors=_task_errors(errors),
        # One per attempt, this one included: TaskContext.attempt counts them.
        worker_ids=_worker_ids(errors, ctx.worker_id or "", ctx.attempt),
    )


def _task_errors(errors: list[dict[str, Any]]) -> list[TaskError]:
    return [
        TaskError(
            exception_class_path=str(error.get("error_type") or ""),
            traceback=str(error.get("traceback") or ""),
        )
        for error in errors
    ]


def _worker_ids(errors: list[dict[str, Any]], current: str | None, attempts: int) -> list[str]:
    """One worker id per attempt of the job's current life (a requeue starts a new one): the
    failed attempts' from their error records, then ``current`` (the attempt running, or the
    one that succeeded). An attempt whose record is gone (``ERROR_HISTORY_LIMIT``) gets ""."""
    ids = [str(error.get("worker_id") or "") for error in errors]
    if current is not None:
        ids.append(current)
    ids = ids[-attempts:] if attempts > 0 else []
    return [""] * (attempts - len(ids)) + ids


def _failed(result: TaskResult[Any, Any], exc: BaseException) -> TaskResult[Any, Any]:
    kind = type(exc)
    error = TaskError(
        exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
        traceback="".join(format_exception(exc)),
    )
    return dataclasses.replace(
        result,
        status=TaskResultStatus.FAILED,
        finished_at=datetime.now(UTC),
        errors=[*result.errors, error],
    )


def _succeeded(result: TaskResult[Any, Any], value: Any) -> TaskResult[Any, Any]:
    done = dataclasses.replace(
        result, status=TaskResultStatus.SUCCESSFUL, finished_at=datetime.now(UTC)
    )
    object.__setattr__(done, "_return_value", value)
    return done


# -- a TaskResult from a stored job -------------------------------------------------------------

_STATUS = {
    JobStatus.QUEUED: TaskResultStatus.READY,
    JobStatus.PROCESSING: TaskResultStatus.RUNNING,
    JobStatus.DONE: TaskResultStatus.SUCCESSFUL,
    JobStatus.DEAD_LETTER: TaskResultStatus.FAILED,
    # django.tasks has no cancelled state: a cancelled task will never succeed.
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}


def _result(
    task: Task[Any, Any],
    job_id: str,
    *,
    status: TaskResultStatus,
    args: list[Any],
    kwargs: dict[str, Any],
    enqueued_at: datetime | None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    last_attempted_at: datetime | None = None,
    errors: list[TaskError] | None = None,
    worker_ids: list[str] | None = None,
) -> TaskResult[Any, Any]:
    return TaskResult(
        task=task,
        id=job_id,
        status=status,
        enqueued_at=enqueued_at,
        started_at=started_at,
        finished_at=finished_at,
        last_attempted_at=last_attempted_at,
        args=args,
        kwargs=kwargs,
        backend=task.backend,
        errors=errors or [],
        worker_ids=worker_ids or [],
    )


def _as_stored(task: Task[Any, Any], info: JobInfo) -> Task[Any, Any]:
    """``task`` with the queue and priority its job was stored with."""
    if task.queue_name == info.queue and soniq_priority(task.priority) == info.priority:
        return task
    try:
        return task.using(priority=django_priority(info.priority), queue_name=info.queue)
    except InvalidTask:  # e.g. the queue is no longer in QUEUES: the result is still read
        return task


def _from_info(result_id: object, info: JobInfo | None) -> TaskResult[Any, Any]:
    if info is None:
        raise TaskResultDoesNotExist(f"no task result has id {result_id!r}")
    stored = info.args
    task = _task_named(info.task_name)
    if (
        task is None
        or set(stored) != {"args", "kwargs"}
        or not isinstance(stored["args"], list)
        or not isinstance(stored["kwargs"], dict)
    ):
        raise TaskResultDoesNotExist(
            f"{result_id!r} is the id of a soniq job ({info.task_name}), not of a "
            "django.tasks task known to this process"
        )
    status = _STATUS[info.status]
    ran_last = info.status in (JobStatus.PROCESSING, JobStatus.DONE)
    result = _result(
        _as_stored(task, info),
        info.id,
        status=status,
        args=stored["args"],
        kwargs=stored["kwargs"],
        enqueued_at=info.created_at,
        started_at=info.started_at,
        finished_at=info.finished_at
        if status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
        else None,
        last_attempted_at=info.started_at,
        errors=_task_errors(info.errors),
        worker_ids=_worker_ids(
            info.errors, info.worker_id or "" if ran_last else None, info.attempts
        ),
    )
    if status is TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", info.result)
    return result

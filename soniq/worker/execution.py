"""Running one claimed job: arguments, context, timeout, and what came of it."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from soniq.core import codec, masking
from soniq.core.abort import AbortState
from soniq.core.context import JobContext
from soniq.core.control import (
    Aborted,
    Cancel,
    JobControl,
    Retry,
    Snooze,
    dead_letter_at_once,
    ends_the_job,
    snooze_refused,
)
from soniq.core.records import ClaimedJob
from soniq.core.settings import SoniqSettings
from soniq.core.spec import JobSpec
from soniq.worker.deadlines import Deadlines
from soniq.worker.hooks import call_hooks
from soniq.worker.observer import CANCELLED, FAILED, RETRIED, SNOOZED, SUCCEEDED, JobObserver
from soniq.worker.results import (
    MAX_RESULT_BYTES,
    ResultTooLargeError,
    encode_result,
    refusal_text,
    refused_result,
)

logger = logging.getLogger("soniq.worker")

T = TypeVar("T")

# Wraps the call of a sync job in its worker thread (the Django layer closes stale database
# connections around it). Identity by default.
SyncCallWrapper = Callable[[Callable[[], Any]], Callable[[], Any]]


class JobTimeoutError(Exception):
    """The job ran longer than its timeout."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt produced: a JSON result, or an error record for the history."""

    succeeded: bool
    result_json: str | None = None
    error: dict[str, Any] | None = None
    # The worker had lost contact with the database when the job ended (ctx.contact_lost).
    contact_lost: bool = False
    # Straight to the dead letters with this reason, whatever attempts are left: running the
    # job again would only repeat what happened (a result too large to store).
    dead_letter_reason: str | None = None
    # Seconds until the next attempt, chosen by the job (soniq.Retry) instead of its
    # retry_delay.
    retry_delay: float | None = None
    # Back to the queue this many seconds from now, the attempt not charged (soniq.Snooze).
    snooze_delay: float | None = None
    # The job ends cancelled (soniq.Cancel, or an abort); ``error`` is the history entry and
    # ``result_json`` what it returned, if it returned after an abort was requested.
    cancelled: bool = False


# The defaults of the ERROR_MESSAGE_LIMIT and TRACEBACK_LIMIT settings.
MESSAGE_LIMIT = SoniqSettings.model_fields["error_message_limit"].default
TRACEBACK_LIMIT = SoniqSettings.model_fields["traceback_limit"].default
# Characters of a failure's message in the worker's log line.
LOG_MESSAGE_LIMIT = 500


def error_record(
    job: ClaimedJob,
    worker_id: str,
    exc: BaseException,
    *,
    message_limit: int = MESSAGE_LIMIT,
    traceback_limit: int = TRACEBACK_LIMIT,
) -> dict[str, Any]:
    """The record of a failed attempt. Its texts are made storable and bounded
    (:func:`codec.storable_text`): a message with a NUL, or of 50 MB, must not make the
    write of the outcome fail, nor fill the table."""
    kind = type(exc)
    return {
        "attempt": job.attempt,
        "error_type": f"{kind.__module__}.{kind.__qualname__}",
        "message": codec.storable_text(str(exc), message_limit),
        "traceback": codec.storable_text(
            _traceback_text(exc, message_limit), traceback_limit, keep_end=True
        ),
        "failed_at": datetime.now(UTC).isoformat(),
        "worker_id": worker_id,
    }


def _traceback_text(exc: BaseException, message_limit: int) -> str:
    """The traceback of ``exc``, each exception's message line in it cut to about
    ``message_limit`` characters: a 50 MB message must not fill the traceback (whose end is
    kept) and hide the frames, nor be copied whole once more into a joined text."""
    chunks = traceback.TracebackException.from_exception(exc).format()
    return "".join(
        chunk if len(chunk) <= message_limit else codec.storable_text(chunk, message_limit) + "\n"
        for chunk in chunks
    )


def stripped(outcome: Outcome, refusal: BaseException) -> Outcome:
    """``outcome`` without the data the database refused to store (``refusal``): a result
    becomes ``{"unstorable_result": "<why>"}``; an error record keeps its attempt, type, time
    and worker, with a message saying why its text is missing and no traceback."""
    why = refusal_text(refusal)
    if outcome.succeeded:
        return dataclasses.replace(outcome, result_json=refused_result(refusal))
    error = dict(outcome.error or {})
    kept: dict[str, Any] = {
        key: error[key] for key in ("attempt", "failed_at", "worker_id") if key in error
    }
    return dataclasses.replace(
        outcome,
        error={
            **kept,
            "error_type": codec.escape_text(str(error.get("error_type", "")))[:200],
            "message": f"the error record was not stored: {why}",
            "traceback": "",
        },
    )


def _what_next(spec: JobSpec, exc: Exception, job: ClaimedJob) -> dict[str, Any]:
    """What a failure with ``exc`` asks of the worker, as ``Outcome`` fields: a chosen retry
    delay (soniq.Retry), a snooze (soniq.Snooze; the dead letters once the job used all its
    snoozes), the end (soniq.Cancel, an abort), the dead letters at once (soniq.Discard, or
    an error the job may not retry), or nothing (retry while attempts are left)."""
    if isinstance(exc, Retry):
        return {"retry_delay": exc.delay}
    if isinstance(exc, Snooze):
        refused = snooze_refused(exc, job.snoozes)
        if refused is not None:
            return {"dead_letter_reason": refused}
        return {"snooze_delay": exc.delay}
    if isinstance(exc, Cancel | Aborted):
        return {"cancelled": True}
    return {"dead_letter_reason": dead_letter_at_once(spec, exc)}


def observed_outcome(spec: JobSpec, exc: BaseException, job: ClaimedJob) -> str:
    """What the observer is told of an attempt that raised ``exc``."""
    if isinstance(exc, Cancel | Aborted):
        return CANCELLED
    if isinstance(exc, Snooze) and snooze_refused(exc, job.snoozes) is None:
        return SNOOZED
    final = ends_the_job(spec, exc, job.attempt, job.max_attempts, job.snoozes)
    return FAILED if final else RETRIED


def log_message(
    exc: BaseException, args: Any, masked_names: tuple[str, ...], message_limit: int
) -> str:
    """A failure's message as the worker logs it: masked as the admin masks it (the values of
    the job's masked arguments, and values written after a masked name, hidden), on one line
    (job data must not split or forge log lines) and at most :data:`LOG_MESSAGE_LIMIT`
    characters (nor flood the log)."""
    # Cut before masking, to the stored length: masking a 50 MB message would take seconds.
    text = codec.storable_text(str(exc), max(message_limit, LOG_MESSAGE_LIMIT))
    text = masking.redact(text, masking.secrets_in(args, masked_names), masked_names)
    return codec.one_line(codec.storable_text(text, LOG_MESSAGE_LIMIT))


class _Raised:
    """An exception carried out of a job's thread as a value. Taken out once: the thread
    pool's future and the asyncio future wrapping it reference each other until the garbage
    collector runs, and must not keep the exception (and its traceback's frames) alive."""

    __slots__ = ("_exception",)

    def __init__(self, exception: Exception) -> None:
        self._exception: Exception | None = exception

    def take(self) -> Exception:
        exception, self._exception = self._exception, None
        assert exception is not None, "taken twice"
        return exception


def job_context(
    job: ClaimedJob,
    worker_id: str,
    contact_lost: threading.Event | None = None,
    abort: AbortState | None = None,
) -> JobContext:
    return JobContext(
        job_id=job.id,
        job_name=job.task_name,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        queue=job.queue,
        worker_id=worker_id,
        scheduled_at=job.scheduled_at,
        created_at=job.created_at,
        snoozes=job.snoozes,
        _contact_lost=contact_lost,
        _abort=abort,
    )


def job_arguments(spec: JobSpec, job: ClaimedJob, ctx: JobContext | None) -> dict[str, Any]:
    """The keyword arguments of the job function for this run (``ctx`` is given when the
    function takes one)."""
    kwargs: dict[str, Any] = dict(job.args)
    if spec.args_model is not None:
        # The stored arguments are the model's JSON dump; give the function the model's
        # Python values back (datetimes, nested models, ...).
        kwargs = dict(spec.args_model.model_validate(kwargs, by_alias=True, by_name=True))
    if spec.contract.context_parameter:
        assert ctx is not None, "the job takes a context"
        kwargs[spec.contract.context_parameter] = ctx
    return kwargs


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Live(AbortState):
    """A job the runner is running: its abort state (the job's context reads it), and what
    an abort request needs to reach it. One object per job: this is on every job's path."""

    __slots__ = ("calling", "cancelled", "is_async", "task")

    def __init__(self, task: asyncio.Task[Any], is_async: bool, calling: bool) -> None:
        super().__init__()
        self.task = task
        self.is_async = is_async
        # Its function is being awaited: only then may an abort cancel the task (in a hook,
        # the cancellation would escape the runner). Without hooks the runner awaits nothing
        # else, so it is set once for the whole run.
        self.calling = calling
        self.cancelled = False  # its task was cancelled for the abort (and nothing else)


def _swallowed(live: _Live) -> None:
    """An async job caught the cancellation of its abort and went on: take that request
    back, or the task would count it as still pending (``asyncio.timeout`` reads that)."""
    if live.cancelled:
        live.cancelled = False
        live.task.uncancel()


class JobRunner:
    """Runs jobs for one worker; never raises for a job's failure (only on cancellation)."""

    def __init__(
        self,
        *,
        worker_id: Callable[[], str],
        default_timeout: float,
        threads: Executor,
        hooks: dict[str, list[Callable[..., Any]]],
        sync_call_wrapper: SyncCallWrapper | None = None,
        on_thread_freed: Callable[[], None] = lambda: None,
        message_limit: int = MESSAGE_LIMIT,
        traceback_limit: int = TRACEBACK_LIMIT,
        max_result_bytes: int = MAX_RESULT_BYTES,
        masked_names: tuple[str, ...] = masking.DEFAULT_MASKED_NAMES,
        observer: JobObserver | None = None,
    ) -> None:
        self.observer = observer
        self.message_limit = message_limit
        self.traceback_limit = traceback_limit
        self.max_result_bytes = max_result_bytes
        self.masked_names = masked_names
        self.worker_id = worker_id
        self.default_timeout = default_timeout
        self.threads = threads
        self.hooks = hooks
        self.sync_call_wrapper = sync_call_wrapper
        # Called on the loop when a thread that ran past its job's timeout finally returns.
        self.on_thread_freed = on_thread_freed
        self._overran: set[Future[Any]] = set()
        self._deadlines = Deadlines()
        # The contact_lost flag of the jobs that start before the next fence: one Event shared
        # by them all (one per job cost a tenth of the worker's time per no-op job). A fence
        # sets it and puts a new one in its place for the jobs that start after it.
        self._contact = threading.Event()
        self._active = 0
        # Whether any hook is registered: without one, a job that takes no context gets none.
        self._hooked = any(hooks.values())
        # Running jobs by id (abort requests look them up), and aborts requested for jobs
        # not running yet (claimed, their start being written): applied when they start.
        self._live: dict[str, _Live] = {}
        self._early_aborts: dict[str, tuple[str, str]] = {}

    def abort(self, job_id: str, by: str, at: str) -> bool:
        """An abort of ``job_id`` was requested: an async job's task is cancelled now, a sync
        job sees ``ctx.abort_requested``; either ends cancelled. A job not running yet is
        aborted as it starts. True when this call told a running job."""
        live = self._live.get(job_id)
        if live is None:
            self._early_aborts[job_id] = (by, at)
            return False
        if live.requested:
            return False  # told already
        live.request(by, at)
        # Not cancelled: while it awaits ctx.wait_for_abort() (it reacts itself), or when a
        # stop or a fence cancelled it already (that wins: the job goes back, cancelled).
        if (
            live.is_async
            and live.calling
            and not live.waiting
            and not live.task.done()
            and not live.task.cancelling()
        ):
            live.cancelled = True
            live.task.cancel()
        return True

    def forget_abort(self, job_id: str) -> None:
        """The job will not run here (released, dropped): its early abort is moot."""
        self._early_aborts.pop(job_id, None)

    def keep_early_aborts(self, requested: set[str]) -> None:
        """Forget the early aborts of jobs no longer requested (they ended, or went back):
        what is asked of jobs that never start here must not pile up."""
        for job_id in [job_id for job_id in self._early_aborts if job_id not in requested]:
            del self._early_aborts[job_id]

    def overrunning(self) -> int:
        """Threads still running a sync job whose timeout expired: each holds a slot."""
        return len(self._overran)

    def flag_contact_lost(self) -> int:
        """Set ``ctx.contact_lost`` for every running job; how many there were."""
        self._contact.set()
        self._contact = threading.Event()
        return self._active

    async def run(self, spec: JobSpec, job: ClaimedJob) -> Outcome:
        self._active += 1
        task = asyncio.current_task()
        assert task is not None, "run() runs in a task"
        live = self._live[job.id] = _Live(task, spec.is_async, not self._hooked)
        if self._early_aborts:
            early = self._early_aborts.pop(job.id, None)
            if early is not None:
                live.request(*early)
        try:
            return await self._run(spec, job, self._contact, live)
        finally:
            self._active -= 1
            del self._live[job.id]

    async def _run(
        self, spec: JobSpec, job: ClaimedJob, flag: threading.Event, live: _Live
    ) -> Outcome:
        abort = live
        ctx: JobContext | None = None
        if self._hooked or spec.contract.context_parameter:
            ctx = job_context(job, job.claimed_by or self.worker_id(), flag, abort)
            if self.hooks["before_job"]:
                await call_hooks(self.hooks["before_job"], ctx)
        observer = self.observer
        started = time.monotonic() if observer is not None else 0.0
        limit = spec.timeout if spec.timeout is not None else self.default_timeout
        try:
            if abort.requested:  # before it started: it does not run at all
                raise Aborted(abort.by, abort.at)
            kwargs = job_arguments(spec, job, ctx)
            if spec.is_async and self._hooked:
                live.calling = True
                try:
                    value = await self._within(limit, spec.func(**kwargs), job)
                finally:
                    live.calling = False
            elif spec.is_async:
                value = await self._within(limit, spec.func(**kwargs), job)
            else:
                value = await self._in_thread(spec.func, kwargs, limit, job, live)
        except asyncio.CancelledError:
            # Cancelled for its abort alone (a stop or a fence cancels it too, and wins).
            if not live.cancelled or live.task.uncancel() > 0:
                raise
            return await self._ended(spec, job, ctx, Aborted(abort.by, abort.at), flag, started)
        except Exception as exc:
            if abort.requested and not isinstance(exc, Cancel):
                # However it stopped once asked to, the job ends cancelled by the abort.
                exc = Aborted(abort.by, abort.at)
                _swallowed(live)
            return await self._ended(spec, job, ctx, exc, flag, started)
        if abort.requested:
            _swallowed(live)
            # It returned after its abort was requested: it ends cancelled, its result kept.
            outcome = await self._ended(spec, job, ctx, Aborted(abort.by, abort.at), flag, started)
            try:
                kept = encode_result(
                    job, value, max_bytes=self.max_result_bytes, masked_names=self.masked_names
                )
            except ResultTooLargeError:
                kept = None
            return dataclasses.replace(outcome, result_json=kept)
        try:
            result_json = encode_result(
                job, value, max_bytes=self.max_result_bytes, masked_names=self.masked_names
            )
        except ResultTooLargeError as exc:
            outcome = await self._failed(ctx, job, exc)
            if observer is not None:  # dead-lettered at once, whatever attempts are left
                observer.job_ended(job, FAILED, started)
            return dataclasses.replace(outcome, dead_letter_reason=exc.reason)
        if ctx is not None and self.hooks["after_job"]:
            await call_hooks(self.hooks["after_job"], ctx, value)
        if observer is not None:
            observer.job_ended(job, SUCCEEDED, started)
        return Outcome(True, result_json=result_json)

    async def _ended(
        self,
        spec: JobSpec,
        job: ClaimedJob,
        ctx: JobContext | None,
        exc: Exception,
        flag: threading.Event,
        started: float,
    ) -> Outcome:
        """The outcome of an attempt that raised ``exc`` (or was aborted)."""
        outcome = await self._failed(ctx, job, exc)
        lost = flag.is_set()  # then the worker puts the job back uncharged: no outcome
        outcome = dataclasses.replace(outcome, contact_lost=lost, **_what_next(spec, exc, job))
        if self.observer is not None and not lost:
            self.observer.job_ended(job, observed_outcome(spec, exc, job), started)
        return outcome

    async def _failed(self, ctx: JobContext | None, job: ClaimedJob, exc: Exception) -> Outcome:
        # A Retry or a Discard is the job's own decision, not a fault: logged at INFO.
        logger.log(
            logging.INFO if isinstance(exc, JobControl) else logging.WARNING,
            "job %s (%s) attempt %d/%d %s: %s: %s",
            job.id,
            job.task_name,
            job.attempt,
            job.max_attempts,
            "ended" if isinstance(exc, JobControl) else "failed",
            type(exc).__name__,
            log_message(exc, job.args, self.masked_names, self.message_limit),
        )
        if ctx is not None and self.hooks["on_error"]:
            await call_hooks(self.hooks["on_error"], ctx, exc)
        record = error_record(
            job,
            job.claimed_by or self.worker_id(),
            exc,
            message_limit=self.message_limit,
            traceback_limit=self.traceback_limit,
        )
        return Outcome(False, error=record)

    async def _within(self, limit: float, work: Awaitable[T], job: ClaimedJob) -> T:
        """Await ``work`` for at most ``limit`` seconds; past them, it is cancelled and
        :class:`JobTimeoutError` raised (a TimeoutError the job raises itself keeps its own
        type, message and traceback)."""
        deadline = self._deadlines.arm(limit)
        try:
            return await work
        except asyncio.CancelledError:
            if self._deadlines.release(deadline):
                raise JobTimeoutError(f"{job.task_name} timed out after {limit:g} s") from None
            raise
        finally:
            self._deadlines.release(deadline)

    async def _in_thread(
        self,
        func: Callable[..., Any],
        kwargs: dict[str, Any],
        limit: float,
        job: ClaimedJob,
        abort: AbortState | None = None,
    ) -> Any:
        """Run a sync job in the pool; its timeout counts from when a thread takes it up,
        not while it waits for a thread (one held by a job that overran, for instance)."""
        call: Callable[[], Any] = functools.partial(func, **kwargs)
        if self.sync_call_wrapper is not None:
            call = self.sync_call_wrapper(call)
        loop = asyncio.get_running_loop()
        started = loop.create_future()

        def in_thread() -> Any:
            loop.call_soon_threadsafe(_resolve, started)
            if abort is not None and abort.requested:
                # Aborted while it waited for a thread: it does not start.
                return _Raised(Aborted(abort.by, abort.at))
            try:
                return call()
            except Exception as exc:
                # Carried out as a value: asyncio replaces a TimeoutError crossing from a
                # thread with a new one, losing the job's traceback.
                return _Raised(exc)

        context = contextvars.copy_context()
        inner = self.threads.submit(context.run, in_thread)
        result = asyncio.wrap_future(inner, loop=loop)
        # If the call never starts (the pool was shut down), stop waiting for it to start.
        result.add_done_callback(lambda _: _resolve(started))
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError:
            result.cancel()  # not started yet: it never will be
            raise
        try:
            value = await self._within(limit, result, job)
        except BaseException:
            if not inner.done():
                # A thread cannot be interrupted: it keeps its slot until the call returns.
                self._overran.add(inner)
                inner.add_done_callback(lambda _: self._call_on(loop, inner))
            raise
        if isinstance(value, _Raised):
            raise value.take()
        return value

    def _call_on(self, loop: asyncio.AbstractEventLoop, inner: Future[Any]) -> None:
        # In the thread, when it finally returns; the loop may be closed by then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._freed, inner)

    def _freed(self, inner: Future[Any]) -> None:
        self._overran.discard(inner)
        self.on_thread_freed()

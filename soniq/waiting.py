"""Waiting for a job's end (:meth:`soniq.Soniq.wait_for` and its sync twin), and a stored
result read back as a model (``result_model=``).

On PostgreSQL with ``LISTEN_NOTIFY`` on, the job's end is announced to the waiter: async
waiters on one event loop share a listening connection (``CompletionHub``), a sync waiter
listens on a connection of its own (see ``soniq.backends.postgres.completion``). A waiter
still reads the job every :data:`CHECK_INTERVAL` seconds, in case an end was not announced
(recovery of a dead worker's jobs announces nothing). Elsewhere (SQLite, memory, PgBouncer)
it polls, from :data:`FIRST_POLL` seconds apart up to :data:`LONGEST_POLL`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from soniq.core.errors import (
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    ResultValidationError,
)
from soniq.core.records import JobInfo
from soniq.core.status import JobStatus

if TYPE_CHECKING:
    from soniq.app import Soniq
    from soniq.backends.postgres.completion import CompletionHub

FIRST_POLL = 0.05
LONGEST_POLL = 1.0
CHECK_INTERVAL = 5.0


def with_result_model(info: JobInfo, result_model: Any) -> JobInfo:
    """``info`` with its result validated as ``result_model`` (a pydantic model, or any type
    pydantic can validate); only a finished job's result is validated."""
    if result_model is None or info.status is not JobStatus.DONE:
        return info
    from pydantic import TypeAdapter, ValidationError

    try:
        value = TypeAdapter(result_model).validate_python(info.result)
    except ValidationError as error:
        raise ResultValidationError(
            f"the result of job {info.id} ({info.task_name}) is not a valid "
            f"{getattr(result_model, '__name__', result_model)}: {error}"
        ) from error
    return dataclasses.replace(info, result=value)


_CANCEL_TYPES = ("soniq.core.control.Cancel", "soniq.core.control.Aborted")


def _last_message(info: JobInfo) -> str:
    last = info.last_error
    return str(last.get("message", "")) if last else ""


def settled(info: JobInfo | None, job_id: str, result_model: Any) -> JobInfo | None:
    """The finished job (its result as ``result_model``), ``None`` while it is queued or
    running; raises for a job that failed, was cancelled or does not exist."""
    if info is None:
        raise JobNotFoundError(f"no job nor dead letter has the id {job_id}")
    if info.status is JobStatus.DONE:
        return with_result_model(info, result_model)
    if info.status is JobStatus.DEAD_LETTER:
        raise JobFailedError(
            f"job {info.id} ({info.task_name}) failed: it is a dead letter "
            f"({info.dead_letter_reason}) after {info.attempts} attempt(s); last error: "
            f"{_last_message(info) or '(none)'}",
            job=info,
        )
    if info.status is JobStatus.CANCELLED:
        # The job's own reason, or the abort's; a job cancelled while queued has none (its
        # history holds only failures from before).
        last = info.last_error or {}
        reason = _last_message(info) if last.get("error_type") in _CANCEL_TYPES else ""
        raise JobCancelledError(
            f"job {info.id} ({info.task_name}) was cancelled" + (f": {reason}" if reason else ""),
            job=info,
            reason=reason,
        )
    return None


def _timed_out(job_id: str, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"job {job_id} did not finish within {timeout:g} s")


def _listener_target(app: Soniq) -> tuple[str, dict[str, Any]] | None:
    """Where to LISTEN for the end of jobs of ``app``: a conninfo and connection options, or
    ``None`` to poll."""
    settings = app.settings
    if not settings.listen_notify:
        return None
    from soniq.backends.postgres.conninfo import network_options

    backend = app.backend
    # PostgresBackend and DjangoBackend (on PostgreSQL) name their database.
    conninfo: str | None = getattr(backend, "conninfo", None)
    if not conninfo or not backend.supports_listen:
        return None
    return conninfo, network_options(settings, conninfo)


class _Clock:
    """The time left until the deadline, and the next wait (polling backs off)."""

    def __init__(self, job_id: str, timeout: float | None, listening: bool) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.listening = listening
        self.poll = FIRST_POLL

    def left(self) -> float | None:
        """Seconds until the deadline (``None``: no deadline)."""
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)

    def next_wait(self) -> float:
        wait = CHECK_INTERVAL if self.listening else self.poll
        self.poll = min(self.poll * 2, LONGEST_POLL)
        if self.deadline is None:
            return wait
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _timed_out(self.job_id, self.timeout)
        return min(wait, left)


def _checked_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    return float(timeout)


async def wait_for(
    app: Soniq,
    job_id: str,
    timeout: float | None,  # noqa: ASYNC109 (the deadline spans many waits and reads)
    result_model: Any = None,
) -> JobInfo:
    clock_timeout = _checked_timeout(timeout)
    target = _listener_target(app)
    clock = _Clock(job_id, clock_timeout, listening=target is not None)
    # A job that ended already (the common case when its caller did other work first) needs
    # no listening connection.
    info = settled(await app.backend.get_job(job_id), job_id, result_model)
    if info is not None:
        return info
    if target is None:
        while True:
            await asyncio.sleep(clock.next_wait())
            info = settled(await app.backend.get_job(job_id), job_id, result_model)
            if info is not None:
                return info
    async with contextlib.AsyncExitStack() as stack:
        try:
            # Joining the hub (connecting, marking the job) counts against the timeout too.
            async with asyncio.timeout(clock.left()):
                announced = await stack.enter_async_context(_hub(*target).watching(job_id))
        except TimeoutError:
            raise _timed_out(job_id, clock_timeout) from None
        while True:
            # Cleared before the read: an announcement arriving after it wakes the wait.
            announced.clear()
            info = settled(await app.backend.get_job(job_id), job_id, result_model)
            if info is not None:
                return info
            wait = clock.next_wait()  # raises TimeoutError past the deadline: not in the block
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await announced.wait()
    raise AssertionError("unreachable")  # the loop returns or raises


# The open completion hubs, by event loop and database: a hub's connections belong to the loop
# that opened it. Keyed by the loop's id, the loop kept alongside to tell a new loop that got
# a dead one's id; a hub leaves when its last waiter does.
_hubs: dict[tuple[int, str], tuple[asyncio.AbstractEventLoop, CompletionHub]] = {}


def _hub(conninfo: str, options: dict[str, Any]) -> CompletionHub:
    from soniq.backends.postgres.completion import CompletionHub

    loop = asyncio.get_running_loop()
    key = (id(loop), conninfo)
    found = _hubs.get(key)
    if found is not None and found[0] is loop:
        return found[1]

    def forget(hub: CompletionHub) -> None:
        if _hubs.get(key, (None, None))[1] is hub:
            del _hubs[key]

    hub = CompletionHub(conninfo, options, on_idle=forget)
    _hubs[key] = (loop, hub)
    return hub


def wait_for_sync(
    app: Soniq, job_id: str, timeout: float | None, result_model: Any = None
) -> JobInfo:
    clock_timeout = _checked_timeout(timeout)
    target = _listener_target(app)
    clock = _Clock(job_id, clock_timeout, listening=target is not None)
    info = settled(app.backend.get_job_sync(job_id), job_id, result_model)
    if info is not None:
        return info  # ended already: no listening connection needed
    listener = None
    if target is not None:
        from soniq.backends.postgres.completion import SyncCompletionListener

        listener = SyncCompletionListener.open(*target)
    try:
        if listener is not None:
            listener.watch(job_id)
        while True:
            info = settled(app.backend.get_job_sync(job_id), job_id, result_model)
            if info is not None:
                return info
            wait = clock.next_wait()
            if listener is not None:
                listener.wait(job_id, wait)
            else:
                time.sleep(wait)
    finally:
        if listener is not None:
            listener.close()

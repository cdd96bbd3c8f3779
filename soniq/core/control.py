"""Exceptions a job raises to tell its worker what to do with it, rather than to report a
failure: ``raise soniq.Retry(delay=30)`` runs it again at a time of its choosing (the attempt
counts), ``raise soniq.Snooze(60)`` runs it again later without charging the attempt,
``raise soniq.Cancel("order withdrawn")`` ends it ``cancelled``, and
``raise soniq.Discard("unknown customer")`` moves it to the dead letters at once.

All are ``Exception`` subclasses, so that code which catches ``Exception`` around a job's
body sees them as it sees any other; they are recorded in the job's history like a failure,
with their type and message.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from soniq.core import options
from soniq.core.retry import MAX_RETRY_DELAY
from soniq.core.status import DISCARDED, MAX_SNOOZES_REASON, NOT_RETRYABLE

if TYPE_CHECKING:
    from soniq.core.spec import JobSpec


# How many times one job may snooze (soniq.Snooze) over its life; the next snooze sends it
# to the dead letters (reason ``max_snoozes``): a job that waits for something that never
# comes must not hold its place for ever.
MAX_SNOOZES = 100


class JobControl(Exception):
    """Raised inside a job: an instruction to the worker, not a failure of the job's code."""


def _checked_delay(kind: str, delay: float | timedelta) -> float:
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    try:
        checked = options.check_seconds(seconds)
    except ValueError as exc:
        raise ValueError(f"{kind}(...) delay {exc}") from None
    if checked > MAX_RETRY_DELAY:
        raise ValueError(f"{kind}(...) delay must be at most a year, got {seconds!r}")
    return checked


class Retry(JobControl):
    """Run the job again ``delay`` seconds (or a ``timedelta``) from now, whatever its
    ``retry_delay``, ``retry_on`` and ``no_retry_on`` say. The attempt counts: on the job's
    last attempt, it goes to the dead letters (``max_attempts``) instead."""

    def __init__(self, delay: float | timedelta = 0, reason: str = "") -> None:
        self.delay = _checked_delay("Retry", delay)
        self.reason = str(reason)
        super().__init__(self.reason or f"retry requested in {self.delay:g} s")

    def __reduce__(self) -> tuple[Any, ...]:  # pickled and copied by what it was built from
        return (type(self), (self.delay, self.reason))


class Discard(JobControl):
    """Move the job to the dead letters now (reason ``discarded``), whatever attempts it has
    left: running it again could only fail the same way. ``reason`` is kept as the message of
    the last entry of its error history."""

    def __init__(self, reason: str = "") -> None:
        self.reason = str(reason)
        super().__init__(self.reason or "discarded by the job")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


class Snooze(JobControl):
    """Run the job again ``seconds`` (or a ``timedelta``) from now without charging the
    attempt: it waits for something (a file, a partner's window) rather than failing. A job
    snoozes at most :data:`MAX_SNOOZES` times; the next snooze sends it to the dead letters
    (reason ``max_snoozes``)."""

    def __init__(self, seconds: float | timedelta = 0, reason: str = "") -> None:
        self.delay = _checked_delay("Snooze", seconds)
        self.reason = str(reason)
        super().__init__(self.reason or f"snoozed for {self.delay:g} s")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.delay, self.reason))


class Cancel(JobControl):
    """End the job ``cancelled`` now, with ``reason`` kept as the message of its last history
    entry: no retry, no dead letter (there is nothing left to do)."""

    def __init__(self, reason: str = "") -> None:
        self.reason = str(reason)
        super().__init__(self.reason or "cancelled by the job")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


class Aborted(JobControl):
    """The record of an attempt stopped because an operator asked for its abort
    (``cancel_jobs(..., abort=True)``): the job ends ``cancelled``. soniq raises it in an
    async job in place of the ``CancelledError``; a job never needs to raise it itself."""

    def __init__(self, by: str = "", at: str = "") -> None:
        self.by = str(by)
        self.at = str(at)
        who = f" by {self.by}" if self.by else ""
        when = f" at {self.at}" if self.at else ""
        super().__init__(f"abort requested{who}{when}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.by, self.at))


def snooze_refused(error: BaseException, snoozes: int) -> str | None:
    """``max_snoozes`` when ``error`` is a :class:`Snooze` of a job that used them all."""
    if isinstance(error, Snooze) and snoozes >= MAX_SNOOZES:
        return MAX_SNOOZES_REASON
    return None


def dead_letter_at_once(spec: JobSpec | None, error: BaseException) -> str | None:
    """The reason a failure with ``error`` sends its job to the dead letters whatever attempts
    it has left: it raised :class:`Discard`, or an error its registration (``spec``) may not
    retry. ``None``: retried while attempts are left (a :class:`Retry` always is)."""
    if isinstance(error, Discard):
        return DISCARDED
    if isinstance(error, Retry) or spec is None or spec.may_retry(error):
        return None
    return NOT_RETRYABLE


def ends_the_job(
    spec: JobSpec | None, error: BaseException, attempt: int, limit: int, snoozes: int = 0
) -> bool:
    """Whether attempt ``attempt`` of ``limit`` (``max_attempts``), failed with ``error``, is
    the job's last: the one place that decides it for the worker, ``drain()``, the metrics and
    the ``django.tasks`` signals. A :class:`Cancel` or an abort always ends it; a
    :class:`Snooze` never does, until the job used its ``MAX_SNOOZES``."""
    if isinstance(error, Cancel | Aborted):
        return True
    if isinstance(error, Snooze):
        return snooze_refused(error, snoozes) is not None
    return attempt >= limit or dead_letter_at_once(spec, error) is not None

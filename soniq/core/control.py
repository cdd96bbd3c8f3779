"""Exceptions a job raises to tell its worker what to do with it, rather than to report a
failure: ``raise soniq.Retry(delay=30)`` runs it again at a time of its choosing (the attempt
counts), ``raise soniq.Discard("unknown customer")`` moves it to the dead letters at once.

Both are ``Exception`` subclasses, so that code which catches ``Exception`` around a job's
body sees them as it sees any other; they are recorded in the job's error history like a
failure, with their type and message.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from soniq.core import options
from soniq.core.retry import MAX_RETRY_DELAY
from soniq.core.status import DISCARDED, NOT_RETRYABLE

if TYPE_CHECKING:
    from soniq.core.spec import JobSpec


class JobControl(Exception):
    """Raised inside a job: an instruction to the worker, not a failure of the job's code."""


class Retry(JobControl):
    """Run the job again ``delay`` seconds (or a ``timedelta``) from now, whatever its
    ``retry_delay``, ``retry_on`` and ``no_retry_on`` say. The attempt counts: on the job's
    last attempt, it goes to the dead letters (``max_attempts``) instead."""

    def __init__(self, delay: float | timedelta = 0, reason: str = "") -> None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        try:
            self.delay = options.check_seconds(seconds)
        except ValueError as exc:
            raise ValueError(f"Retry(delay=...) {exc}") from None
        if self.delay > MAX_RETRY_DELAY:
            raise ValueError(f"Retry(delay=...) must be at most a year, got {seconds!r}")
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


def dead_letter_at_once(spec: JobSpec | None, error: BaseException) -> str | None:
    """The reason a failure with ``error`` sends its job to the dead letters whatever attempts
    it has left: it raised :class:`Discard`, or an error its registration (``spec``) may not
    retry. ``None``: retried while attempts are left (a :class:`Retry` always is)."""
    if isinstance(error, Discard):
        return DISCARDED
    if isinstance(error, Retry) or spec is None or spec.may_retry(error):
        return None
    return NOT_RETRYABLE


def ends_the_job(spec: JobSpec | None, error: BaseException, attempt: int, limit: int) -> bool:
    """Whether attempt ``attempt`` of ``limit`` (``max_attempts``), failed with ``error``, is
    the job's last: the one place that decides it for the worker, ``drain()``, the metrics and
    the ``django.tasks`` signals."""
    return attempt >= limit or dead_letter_at_once(spec, error) is not None

"""Exceptions a job raises to tell its worker what to do with it, rather than to report a
failure: ``raise soniq.Retry(delay=30)`` runs it again at a time of its choosing (the attempt
counts), ``raise soniq.Discard("unknown customer")`` moves it to the dead letters at once.

Both are ``Exception`` subclasses, so that code which catches ``Exception`` around a job's
body sees them as it sees any other; they are recorded in the job's error history like a
failure, with their type and message.
"""

from __future__ import annotations

from datetime import timedelta

from soniq.core import options

# The longest delay a Retry may ask for, as for computed retry delays: one year.
MAX_RETRY_DELAY = 365 * 24 * 3600.0


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


class Discard(JobControl):
    """Move the job to the dead letters now (reason ``discarded``), whatever attempts it has
    left: running it again could only fail the same way. ``reason`` is kept as the message of
    the last entry of its error history."""

    def __init__(self, reason: str = "") -> None:
        self.reason = str(reason)
        super().__init__(self.reason or "discarded by the job")

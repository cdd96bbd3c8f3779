"""When a failed job runs again: the delay before attempt ``n + 1``.

``retry_delay`` is a number of seconds, or a list with one delay per retry (the last one
repeats). ``retry_backoff`` doubles the delay at each retry and adds jitter so that jobs that
failed together do not all come back together. ``retry_max_delay`` caps the result.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only annotations: soniq.core.spec imports soniq.core.control, which uses this
    from soniq.core.spec import JobSpec

# Exponents beyond this are pointless (2**32 s is over a century) and would overflow floats
# for absurd attempt counts.
_MAX_EXPONENT = 32
# The longest delay before a retry: one year. A longer one is a mistake (a backoff without
# retry_max_delay over many attempts), and past the year 9999 the database could not even
# store the time of the next attempt.
MAX_RETRY_DELAY = 365 * 24 * 3600.0


def retry_delay_seconds(
    spec: JobSpec, failed_attempt: int, *, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after ``failed_attempt`` (1-based) failed, before the next attempt."""
    delays = spec.retry_delay
    base = delays[min(failed_attempt, len(delays)) - 1] if isinstance(delays, tuple) else delays
    delay = base
    if spec.retry_backoff and base > 0:
        # Exponential growth with "equal jitter": half fixed, half random, so the expected
        # spacing still grows while simultaneous failures spread out.
        grown = base * 2 ** min(failed_attempt - 1, _MAX_EXPONENT)
        if spec.retry_max_delay is not None:
            grown = min(grown, spec.retry_max_delay)
        delay = grown / 2 + rand() * grown / 2
    if spec.retry_max_delay is not None:
        delay = min(delay, spec.retry_max_delay)
    return min(max(0.0, delay), MAX_RETRY_DELAY)


def lost_job_fate(attempt: int, max_attempts: int, losses: int, max_losses: int) -> str | None:
    """What becomes of a job that was running when its worker died: the dead-letter reason,
    or ``None`` to run it again. ``losses`` counts the workers it lost before this one.

    The lost run counts as a failed attempt: ``max_attempts`` if it was the last one. Before
    that, a job that has now lost ``max_losses`` workers is quarantined (``worker_lost``): a
    job that kills its worker must not take the fleet down forever.
    """
    if losses + 1 >= max_losses:
        return "worker_lost"
    if attempt >= max_attempts:
        return "max_attempts"
    return None

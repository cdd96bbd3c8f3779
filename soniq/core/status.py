"""The lifecycle states of a job."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class JobStatus(StrEnum):
    """States a ``soniq_jobs`` row can hold, plus ``DEAD_LETTER`` for reporting.

    ``DEAD_LETTER`` is never stored in ``soniq_jobs``: jobs that exhaust their attempts move
    to ``soniq_dead_letter_jobs``. ``get_job`` reports such a job with this status so callers
    need not look in two places.
    """

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    CANCELLED = "cancelled"
    DEAD_LETTER = "dead_letter"

    @classmethod
    def active(cls) -> tuple[JobStatus, ...]:
        """States in which a job still counts for deduplication."""
        return (cls.QUEUED, cls.PROCESSING)


class Suspicion(IntEnum):
    """Why a job back in the queue after its worker died gets extra care on its next start.

    Stored in ``soniq_jobs.suspicion``. A worker writes the start of such a job to the
    database before running it, and runs a job lost while running with no other job beside it,
    so that a job that kills its worker is the only one charged when it does so again.
    """

    NONE = 0
    #: Held by a worker that died before the job was recorded as started: it may have run.
    UNCONFIRMED_START = 1
    #: Running when its worker died: it may be what killed the worker.
    LOST_WHILE_RUNNING = 2


# Why a job is a dead letter (soniq_dead_letter_jobs.reason): its last attempt failed; its
# worker was lost too often (recovery); its result was too large to store; it failed with an
# error its job may not retry (retry_on / no_retry_on); it raised soniq.Discard; it raised
# soniq.Snooze once more after MAX_SNOOZES snoozes.
NOT_RETRYABLE = "not_retryable"
DISCARDED = "discarded"
MAX_SNOOZES_REASON = "max_snoozes"
DEAD_LETTER_REASONS = (
    "max_attempts",
    "worker_lost",
    "result_too_large",
    NOT_RETRYABLE,
    DISCARDED,
    MAX_SNOOZES_REASON,
)

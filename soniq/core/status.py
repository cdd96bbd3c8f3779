"""The lifecycle states of a job."""

from __future__ import annotations

from enum import StrEnum


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

"""Runtime metadata handed to a running job."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class JobContext:
    """Read-only facts about the current attempt.

    A job receives it by declaring a parameter annotated with ``JobContext``.
    """

    job_id: str
    job_name: str
    attempt: int
    max_attempts: int
    queue: str
    worker_id: str | None = None
    scheduled_at: datetime | None = None
    created_at: datetime | None = None
    # Set by the worker when it fences itself (see contact_lost).
    _contact_lost: threading.Event | None = field(default=None, repr=False, compare=False)

    @property
    def contact_lost(self) -> bool:
        """True once the worker running this attempt has been out of contact with the
        database past its lease: other workers may take the job back and run it again, and
        this run's outcome is then discarded. Async jobs are cancelled at that moment; a long
        sync job cannot be, so it should check this now and then and stop early."""
        return self._contact_lost is not None and self._contact_lost.is_set()

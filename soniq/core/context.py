"""Runtime metadata handed to a running job."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import datetime

from soniq.core.abort import AbortState


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
    # Times the job snoozed before this attempt (soniq.Snooze; at most MAX_SNOOZES).
    snoozes: int = 0
    # Set by the worker when it fences itself (see contact_lost).
    _contact_lost: threading.Event | None = field(default=None, repr=False, compare=False)
    # Set by the worker when an operator asks to abort this job (see abort_requested).
    _abort: AbortState | None = field(default=None, repr=False, compare=False)

    @property
    def contact_lost(self) -> bool:
        """True once the worker running this attempt has been out of contact with the
        database past its lease: other workers may take the job back and run it again, and
        this run's outcome is then discarded. Async jobs are cancelled at that moment; a long
        sync job cannot be, so it should check this now and then and stop early."""
        return self._contact_lost is not None and self._contact_lost.is_set()

    @property
    def abort_requested(self) -> bool:
        """True once an operator asked to abort this job (``cancel_jobs(..., abort=True)``,
        the admin's Abort action, ``soniq jobs cancel --abort``). An async job is cancelled
        at that moment; a sync job cannot be, so a long one should check this now and then
        and stop early: however it ends, the job ends ``cancelled``."""
        return self._abort is not None and self._abort.requested

    async def wait_for_abort(self) -> None:
        """Return once an abort of this job is requested: for an async job that waits on
        something long and wants to tidy up before it stops. While a job awaits this, an
        abort does not cancel it: it returns here instead, and the job ends (however it
        does) ``cancelled``. Never returns for a job run without a worker
        (``soniq.testing.drain()`` runs jobs to their end)."""
        if self._abort is None:
            await asyncio.Event().wait()
        else:
            await self._abort.wait()

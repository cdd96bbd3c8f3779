"""Plain records that cross the boundary between the core and the backends."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from soniq.core.status import JobStatus, Suspicion


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job, ready to insert. ``scheduled_at=None`` means "now" (database clock)."""

    id: uuid.UUID
    task_name: str
    args: dict[str, Any]
    args_json: str
    queue: str
    priority: int
    max_attempts: int
    scheduled_at: datetime | None = None
    dedup_key: str | None = None
    # Jobs that share a lock run one at a time, in order (soniq.core.limits).
    lock: str | None = None

    @property
    def inserted_alone(self) -> bool:
        """Whether the job needs a statement of its own: a deduplicated job (its conflict is
        settled row by row) or a locked one (it takes its place in its lock's order)."""
        return self.dedup_key is not None or self.lock is not None


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job's state as :meth:`Soniq.get_job` reports it.

    ``errors`` holds one entry per failed attempt (oldest first), each a dict with at least
    ``attempt``, ``error_type``, ``message`` and ``traceback``: the newest
    ``ERROR_HISTORY_LIMIT`` of them. ``errors_dropped`` counts the older entries dropped to keep
    to that limit, over the job's whole life (requeues of a dead letter included).
    """

    id: str
    task_name: str
    status: JobStatus
    args: dict[str, Any]
    queue: str
    priority: int
    attempts: int
    max_attempts: int
    scheduled_at: datetime | None
    created_at: datetime | None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: str | None = None
    result: Any = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    errors_dropped: int = 0
    dedup_key: str | None = None
    dead_letter_reason: str | None = None
    # Times the job snoozed (soniq.Snooze) over its life; each was an uncharged requeue.
    snoozes: int = 0
    # When an abort of the job was requested while it ran, and by whom.
    abort_requested_at: datetime | None = None
    abort_requested_by: str | None = None
    # Jobs that share a lock run one at a time, in order.
    lock: str | None = None

    @property
    def last_error(self) -> dict[str, Any] | None:
        return self.errors[-1] if self.errors else None


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker took: ``attempt`` is the attempt it is about to run (1-based).

    ``claimed_by`` is the worker id the claim was made under; every write about this run uses
    it, so a worker that changed identity meanwhile cannot pass the fence of a newer run.
    """

    id: str
    task_name: str
    args: dict[str, Any]
    queue: str
    priority: int
    attempt: int
    max_attempts: int
    scheduled_at: datetime | None
    created_at: datetime | None
    claimed_by: str = ""
    suspicion: Suspicion = Suspicion.NONE
    # Times it snoozed before this attempt (see soniq.core.control.MAX_SNOOZES).
    snoozes: int = 0
    # Its lock, if any: the next job of the lock waits for this one's end to be written.
    lock: str | None = None

    @property
    def runs_alone(self) -> bool:
        """Running when a worker died: it runs with no other job of its worker beside it."""
        return self.suspicion is Suspicion.LOST_WHILE_RUNNING


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker records about itself in ``soniq_workers``."""

    id: str
    hostname: str
    pid: int
    queues: tuple[str, ...] | None
    task_names: tuple[str, ...]
    concurrency: int
    version: str


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What one stale-worker recovery pass did: ``requeued`` jobs were running when their
    worker died (charged), ``released`` ones were only claimed (uncharged)."""

    dead_workers: tuple[str, ...] = ()
    requeued: int = 0
    dead_lettered: int = 0
    released: int = 0

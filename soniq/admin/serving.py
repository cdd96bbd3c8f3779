"""Queued work that no live worker serves.

A worker claims only the jobs whose task it registered, in the queues it serves (all of them
when ``queues`` is null). A job of a task no running worker knows, or in a queue none of them
serves, therefore stays queued for good and looks like any other queued job. The admin says so,
from the rows the workers keep in ``soniq_workers`` (their task names and queues).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count

from soniq.core.status import JobStatus
from soniq.models import Job, Worker

NO_WORKER = "no live worker serves this task"
NO_QUEUE = "no live worker serves this queue"


@dataclass(frozen=True)
class Serving:
    """What the live workers serve: (task names, queues or ``None`` for all) per worker."""

    workers: tuple[tuple[frozenset[str], frozenset[str] | None], ...]

    def why_unserved(self, task: str, queue: str) -> str | None:
        """``None`` if a live worker serves ``task`` in ``queue``; else which part is missing."""
        knows_task = [queues for tasks, queues in self.workers if task in tasks]
        if not knows_task:
            return NO_WORKER
        if any(queues is None or queue in queues for queues in knows_task):
            return None
        return NO_QUEUE


def live_serving(alias: str, now: datetime, heartbeat_timeout: float) -> Serving:
    """The workers that are running and heartbeated within ``heartbeat_timeout`` seconds."""
    cutoff = now - timedelta(seconds=heartbeat_timeout)
    rows = (
        Worker.objects.using(alias)
        .filter(status="running", last_heartbeat_at__gte=cutoff)
        .order_by()
        .values_list("task_names", "queues")
    )
    return Serving(
        tuple(
            (frozenset(tasks or ()), None if queues is None else frozenset(queues))
            for tasks, queues in rows
        )
    )


@dataclass(frozen=True)
class Unserved:
    task: str
    queue: str
    queued: int
    why: str


def unserved(alias: str, serving: Serving) -> list[Unserved]:
    """Queued jobs by (task, queue) that no live worker serves, most first. One ``GROUP BY``
    over the queued rows (the claim index, partial on them)."""
    groups = (
        Job.objects.using(alias)
        .filter(status=JobStatus.QUEUED.value)
        .order_by()
        .values("task_name", "queue")
        .annotate(n=Count("id"))
        .values_list("task_name", "queue", "n")
    )
    found = [
        Unserved(task, queue, n, why)
        for task, queue, n in groups
        if (why := serving.why_unserved(task, queue)) is not None
    ]
    return sorted(found, key=lambda row: (-row.queued, row.task, row.queue))


# The serving of the request being rendered, for the job list's status column (which Django
# calls without the request).
_current: ContextVar[Serving | None] = ContextVar("soniq_serving", default=None)


@contextmanager
def serving_for_rendering(serving: Serving) -> Iterator[None]:
    token = _current.set(serving)
    try:
        yield
    finally:
        _current.reset(token)


def why_unserved(job: Any) -> str | None:
    """For a queued job on the list being rendered: why no live worker will take it."""
    serving = _current.get()
    if serving is None or job.status != JobStatus.QUEUED.value:
        return None
    return serving.why_unserved(job.task_name, job.queue)

"""The limits of the tasks and queues, and how full each is: ``soniq status`` and the admin
dashboard show them.

A task's limits are those its ``@app.job`` declares (``concurrency_limit``, ``rate_limit``), in
the Soniq apps this process imported; a queue's are the ``QUEUE_LIMITS`` setting. How full a
limit is comes from the database, as the limited claim counts it: the jobs ``processing`` of
the task (or in the queue), and the starts recorded in ``soniq_limit_starts`` within the rate's
window. Two queries at most, whatever the number of limits; none without limits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q, Sum

from soniq.core.limits import Limit, queue_key, task_key

logger = logging.getLogger("soniq.commands")

TASK = "task"
QUEUE = "queue"


@dataclass(frozen=True)
class LimitUsage:
    """One task's or queue's limits and how full they are. Without a concurrency limit
    ``concurrency_limit`` is ``None`` (``running`` is counted all the same); without a rate
    limit the rate's fields are ``None``."""

    kind: str  # "task" or "queue"
    name: str
    concurrency_limit: int | None
    running: int  # jobs processing now: claimed or started, not finished
    rate_limit: str | None  # as written: "20/s", "50/15m"
    rate_count: int | None  # at most this many starts ...
    window_seconds: float | None  # ... in any window of this many seconds
    started: int | None  # starts within the last window_seconds

    @property
    def window(self) -> str:
        """The rate's window as people read it: ``"1 s"``, ``"15 min"``, ``"1 h"``."""
        return "-" if self.window_seconds is None else format_window(self.window_seconds)


def format_window(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def registered_task_limits() -> dict[str, Limit]:
    """The limits the tasks registered in this process declare, from every Soniq app (as the
    admin knows the task names). A task registered by two apps shows the first one's."""
    from soniq.app import instances
    from soniq.worker.claiming import task_limits

    found: dict[str, Limit] = {}
    for app in list(instances):
        for name, limit in task_limits(app.registry).items():
            found.setdefault(name, limit)
    return found


def discovered_task_limits(jobs_modules: Iterable[str]) -> dict[str, Limit]:
    """:func:`registered_task_limits` once the jobs modules are imported, as a worker imports
    them. A module that fails to import is reported (a warning) and the others still count."""
    from soniq import django_worker

    try:
        django_worker.discover(jobs_modules)
    except Exception as exc:  # the project's own code: status must still show the rest
        logger.warning(
            "soniq: the jobs modules could not all be imported (task limits may be missing): %s",
            exc,
        )
    return registered_task_limits()


def limit_usage(
    alias: str,
    task_limits: Mapping[str, Limit],
    queue_limits: Mapping[str, Limit],
    now: datetime,
) -> list[LimitUsage]:
    """Every limit, tasks then queues, each sorted by name, with how full it is on database
    ``alias`` at ``now``, read in two queries:

    - jobs ``processing``, grouped by ``(task_name, queue)``, of the limited tasks and queues
      (the partial index on processing rows);
    - ``sum(count)`` of ``soniq_limit_starts`` per rate-limited key, each since its own
      window's start (the index on ``(key, started_at)``).
    """
    from soniq.models import Job, LimitStart

    keyed = [(TASK, name, limit) for name, limit in sorted(task_limits.items()) if limit]
    keyed += [(QUEUE, name, limit) for name, limit in sorted(queue_limits.items()) if limit]
    if not keyed:
        return []

    tasks = {name for kind, name, _ in keyed if kind == TASK}
    queues = {name for kind, name, _ in keyed if kind == QUEUE}
    running: dict[tuple[str, str], int] = {}
    groups = (
        Job.objects.using(alias)
        .filter(status="processing")
        .filter(Q(task_name__in=sorted(tasks)) | Q(queue__in=sorted(queues)))
        .order_by()
        .values("task_name", "queue")
        .annotate(n=Count("id"))
        .values_list("task_name", "queue", "n")
    )
    for task_name, queue, n in groups:
        if task_name in tasks:
            running[(TASK, task_name)] = running.get((TASK, task_name), 0) + n
        if queue in queues:
            running[(QUEUE, queue)] = running.get((QUEUE, queue), 0) + n

    def key_of(kind: str, name: str) -> str:
        return task_key(name) if kind == TASK else queue_key(name)

    windows = Q()
    for kind, name, limit in keyed:
        if limit.rate is not None:
            since = now - timedelta(seconds=limit.rate.period)
            windows |= Q(key=key_of(kind, name), started_at__gt=since)
    started: dict[str, int] = {}
    if windows:
        started = dict(
            LimitStart.objects.using(alias)
            .filter(windows)
            .order_by()
            .values("key")
            .annotate(n=Sum("count"))
            .values_list("key", "n")
        )

    return [
        LimitUsage(
            kind=kind,
            name=name,
            concurrency_limit=limit.concurrency,
            running=running.get((kind, name), 0),
            rate_limit=None if limit.rate is None else limit.rate.text,
            rate_count=None if limit.rate is None else limit.rate.count,
            window_seconds=None if limit.rate is None else limit.rate.period,
            started=None if limit.rate is None else int(started.get(key_of(kind, name)) or 0),
        )
        for kind, name, limit in keyed
    ]

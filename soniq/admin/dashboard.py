"""The operator dashboard in the admin: jobs per queue and status, dead letters, the oldest due
job per queue, the workers, the limits of tasks and queues and how full they are, and charts of
completed and failed jobs.

:func:`collect` reads everything in a fixed, small number of aggregate queries (nine at most,
two more with limits), each on an index or a small table; :func:`dashboard_view` renders it.
The view does not check the permission to open it: the admin site wraps it (``admin_view`` and
``soniq.view_job``). It shows dead letters and workers only to a user who may open their own
list pages (:func:`sections_for`): the dashboard tells nobody more than the pages it links to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from uuid import UUID

from django.conf import settings
from django.contrib.admin.exceptions import NotRegistered
from django.db.models import Count, Min, Model, Q, QuerySet
from django.db.models.functions import TruncMinute
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from soniq.admin.charts import Series, bar_chart
from soniq.admin.common import breadcrumbs
from soniq.admin.known import task_names
from soniq.admin.serving import Unserved, live_serving, unserved
from soniq.commands._limits import LimitUsage, limit_usage, registered_task_limits
from soniq.core.ages import format_age
from soniq.core.limits import Limit
from soniq.core.settings import build_settings
from soniq.core.status import JobStatus
from soniq.models import DeadLetterJob, Job, Worker, finished_rows

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite
    from django.http import HttpRequest

TEMPLATE = "admin/soniq/dashboard.html"
TITLE = "Soniq dashboard"
# Column order of the jobs table: the states a soniq_jobs row can hold.
JOB_STATUSES: tuple[str, ...] = tuple(
    status.value for status in JobStatus if status is not JobStatus.DEAD_LETTER
)
MINUTE_BUCKETS = 60
HOUR_BUCKETS = 24
# Workers listed by name (the counts cover them all).
WORKER_LIST_LIMIT = 50
REFRESH_MIN, REFRESH_MAX = 5, 3600
LIVE_WORKER_STATUSES = ("running", "stopping")

COMPLETED_COLOR = "#417690"
FAILED_COLOR = "#ba2121"


@dataclass(frozen=True)
class Sections:
    """The parts of the dashboard beyond jobs, each shown (and read) or not."""

    dead_letters: bool = True
    workers: bool = True


EVERYTHING = Sections()


@dataclass(frozen=True)
class Bucket:
    """Jobs completed and failed in ``[start, start + width)``."""

    start: datetime
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class WorkerInfo:
    """A running or stopping worker. ``state``: ``online`` (running, heartbeat within the
    timeout), ``stopping`` (likewise, shutting down) or ``stale`` (heartbeat too old: presumed
    dead, not yet marked so)."""

    id: UUID
    hostname: str
    pid: int
    status: str
    queues: list[str] | None
    concurrency: int
    started_at: datetime
    last_heartbeat_at: datetime
    heartbeat_age: timedelta
    state: str

    @property
    def online(self) -> bool:
        return self.state == "online"


@dataclass(frozen=True)
class DashboardData:
    """What the dashboard shows, read at ``now``.

    ``counts`` maps ``(queue, status)`` to the number of ``soniq_jobs`` rows (absent: zero);
    ``oldest_due`` maps a queue to the ``scheduled_at`` of its oldest due queued job.
    ``per_minute`` and ``per_hour`` end with the bucket holding ``now``.
    """

    alias: str
    now: datetime
    heartbeat_timeout: float
    counts: dict[tuple[str, str], int]
    dead_letters: dict[str, int]
    oldest_due: dict[str, datetime]
    workers_online: int
    workers_stale: int
    workers_stopping: int
    workers: list[WorkerInfo]
    per_minute: list[Bucket]
    per_hour: list[Bucket]
    statuses: tuple[str, ...] = field(default=JOB_STATUSES)
    # Of the processing jobs, those a worker has claimed but not started (started_at empty).
    claimed: int = 0
    # Queued jobs, by (task, queue), that no live worker serves: they would wait for good.
    unserved: tuple[Unserved, ...] = ()
    # Every limit of a task or queue, with the jobs running against it and its recent starts.
    limits: tuple[LimitUsage, ...] = ()
    # What was read: a part left out has empty figures, and the page leaves it out too.
    sections: Sections = EVERYTHING

    @property
    def queues(self) -> list[str]:
        """Every queue with a job, a dead letter or a due job, sorted."""
        names = {queue for queue, _ in self.counts} | set(self.dead_letters) | set(self.oldest_due)
        return sorted(names)

    def count(self, queue: str, status: str) -> int:
        return self.counts.get((queue, status), 0)

    def queue_total(self, queue: str) -> int:
        return sum(n for (name, _), n in self.counts.items() if name == queue)

    @property
    def status_totals(self) -> dict[str, int]:
        totals = dict.fromkeys(self.statuses, 0)
        for (_, status), n in self.counts.items():
            totals[status] = totals.get(status, 0) + n
        return totals

    @property
    def total_jobs(self) -> int:
        return sum(self.counts.values())

    @property
    def total_dead_letters(self) -> int:
        return sum(self.dead_letters.values())

    def oldest_due_age(self, queue: str) -> timedelta | None:
        oldest = self.oldest_due.get(queue)
        return None if oldest is None else max(self.now - oldest, timedelta(0))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if timezone.is_naive(value) else value.astimezone(UTC)


def _minute_floor(value: datetime) -> datetime:
    return _utc(value).replace(second=0, microsecond=0)


def _per_minute_counts(rows: Iterable[dict[str, Any]]) -> dict[datetime, int]:
    return {_utc(row["minute"]): row["n"] for row in rows}


def window(now: datetime) -> tuple[datetime, datetime, datetime]:
    """``(hour_start, minute_start, end)`` of the charts at ``now`` (UTC): the per-hour chart
    covers ``[hour_start, end)``, the per-minute one ``[minute_start, end)``, ``end`` being
    the end of the minute holding ``now``."""
    minute = _minute_floor(now)
    hour = minute.replace(minute=0)
    return (
        hour - timedelta(hours=HOUR_BUCKETS - 1),
        minute - timedelta(minutes=MINUTE_BUCKETS - 1),
        minute + timedelta(minutes=1),
    )


def job_counts_query(alias: str) -> QuerySet[Any, Any]:
    """``(queue, status, n, claimed)`` rows: one GROUP BY over ``soniq_jobs``; ``claimed``
    counts the processing jobs not started yet (``started_at`` empty)."""
    return (
        Job.objects.using(alias)
        .order_by()
        .values("queue", "status")
        .annotate(
            n=Count("id"),
            claimed=Count(
                "id", filter=Q(status=JobStatus.PROCESSING.value, started_at__isnull=True)
            ),
        )
        .values_list("queue", "status", "n", "claimed")
    )


def dead_letter_counts_query(alias: str) -> QuerySet[Any, Any]:
    return (
        DeadLetterJob.objects.using(alias)
        .order_by()
        .values("queue")
        .annotate(n=Count("id"))
        .values_list("queue", "n")
    )


def oldest_due_query(alias: str, now: datetime) -> QuerySet[Any, Any]:
    """``(queue, MIN(scheduled_at))`` of due queued jobs. ``status = 'queued'`` lets the
    database read the claim index (partial on queued rows) and never the finished rows."""
    return (
        Job.objects.using(alias)
        .filter(status=JobStatus.QUEUED.value, scheduled_at__lte=now)
        .order_by()
        .values("queue")
        .annotate(oldest=Min("scheduled_at"))
        .values_list("queue", "oldest")
    )


def completed_per_minute_query(alias: str, start: datetime, end: datetime) -> QuerySet[Any, Any]:
    """Done jobs per minute of ``finished_at`` in ``[start, end)``: a range of the finished
    index (partial on finished rows, see :func:`soniq.models.finished_rows`)."""
    return (
        Job.objects.using(alias)
        .filter(finished_rows())
        .filter(status=JobStatus.DONE.value, finished_at__gte=start, finished_at__lt=end)
        .order_by()
        .annotate(minute=TruncMinute("finished_at", tzinfo=UTC))
        .values("minute")
        .annotate(n=Count("id"))
        .values("minute", "n")
    )


def failed_per_minute_query(alias: str, start: datetime, end: datetime) -> QuerySet[Any, Any]:
    """Dead letters per minute of ``dead_lettered_at`` in ``[start, end)`` (its index)."""
    return (
        DeadLetterJob.objects.using(alias)
        .filter(dead_lettered_at__gte=start, dead_lettered_at__lt=end)
        .order_by()
        .annotate(minute=TruncMinute("dead_lettered_at", tzinfo=UTC))
        .values("minute")
        .annotate(n=Count("id"))
        .values("minute", "n")
    )


def _buckets(
    start: datetime,
    width: timedelta,
    count: int,
    completed: dict[datetime, int],
    failed: dict[datetime, int],
) -> list[Bucket]:
    """``count`` buckets from ``start``, summing the per-minute counts falling in each."""
    done = [0] * count
    dead = [0] * count
    for totals, source in ((done, completed), (dead, failed)):
        for minute, n in source.items():
            index = int((minute - start) // width)
            if 0 <= index < count:
                totals[index] += n
    return [Bucket(start + i * width, done[i], dead[i]) for i in range(count)]


def _worker_state(status: str, fresh: bool) -> str:
    if not fresh:
        return "stale"
    return "online" if status == "running" else status


def collect(
    alias: str,
    now: datetime,
    heartbeat_timeout: float,
    sections: Sections = EVERYTHING,
    task_limits: Mapping[str, Limit] | None = None,
    queue_limits: Mapping[str, Limit] | None = None,
) -> DashboardData:
    """Read the dashboard from database ``alias`` at ``now``, in nine queries; two fewer for
    each of the dead letters and the workers left out of ``sections`` (not read at all), and
    up to two more for the limits in ``task_limits`` and ``queue_limits`` (none without).

    - jobs per ``(queue, status)``: one ``GROUP BY`` over ``soniq_jobs``;
    - dead letters per queue: one ``GROUP BY`` over ``soniq_dead_letter_jobs``;
    - the oldest due job per queue: ``MIN(scheduled_at)`` of queued jobs with ``scheduled_at
      <= now``, grouped by queue (the partial claim index; finished rows are not read);
    - workers: counts of those online (``running``, last heartbeat within
      ``heartbeat_timeout`` seconds), ``stopping`` and stale (``running`` or ``stopping``
      with an older heartbeat: dead, not yet noticed), plus up to ``WORKER_LIST_LIMIT`` of
      them, freshest heartbeat first;
    - the queued jobs no live worker serves: the live workers' task names and queues, and
      queued jobs counted by ``(task_name, queue)`` (see :mod:`soniq.admin.serving`);
    - per-minute counts over the last 24 hours (one query for completed, one for failed),
      added up in Python into the 60 minute buckets and the 24 hour buckets (UTC);
    - with limits, the jobs running against them and their starts within the rates' windows
      (see :func:`soniq.commands._limits.limit_usage`).

    *Completed* is jobs with status ``done``, by ``finished_at``. *Failed* is jobs moved to
    the dead letters, by ``dead_lettered_at``: a failed attempt that will be retried is not
    counted (the job is still queued; its errors are in ``soniq_jobs.errors``), nor is a
    cancelled job. Both read only the time range drawn, through an index.
    """
    now = _utc(now)
    hour_start, minute_start, end = window(now)

    grouped = list(job_counts_query(alias))
    counts = {(queue, status): n for queue, status, n, _ in grouped}
    dead_letters = dict(dead_letter_counts_query(alias)) if sections.dead_letters else {}
    oldest_due = {queue: _utc(oldest) for queue, oldest in oldest_due_query(alias, now)}

    worker_counts, workers = (
        _workers(alias, now, heartbeat_timeout) if sections.workers else (_NO_WORKERS, [])
    )

    completed = _per_minute_counts(completed_per_minute_query(alias, hour_start, end))
    failed = (
        _per_minute_counts(failed_per_minute_query(alias, hour_start, end))
        if sections.dead_letters
        else {}
    )

    return DashboardData(
        alias=alias,
        now=now,
        heartbeat_timeout=heartbeat_timeout,
        counts=counts,
        dead_letters=dead_letters,
        oldest_due=oldest_due,
        workers_online=worker_counts["online"],
        workers_stale=worker_counts["stale"],
        workers_stopping=worker_counts["stopping"],
        workers=workers,
        per_minute=_buckets(minute_start, timedelta(minutes=1), MINUTE_BUCKETS, completed, failed),
        per_hour=_buckets(hour_start, timedelta(hours=1), HOUR_BUCKETS, completed, failed),
        claimed=sum(claimed for *_, claimed in grouped),
        unserved=tuple(unserved(alias, live_serving(alias, now, heartbeat_timeout))),
        limits=tuple(limit_usage(alias, task_limits or {}, queue_limits or {}, now)),
        sections=sections,
    )


_NO_WORKERS = {"online": 0, "stopping": 0, "stale": 0}


def _workers(
    alias: str, now: datetime, heartbeat_timeout: float
) -> tuple[dict[str, int], list[WorkerInfo]]:
    """The live workers counted by state, and the freshest ``WORKER_LIST_LIMIT`` of them."""
    cutoff = now - timedelta(seconds=heartbeat_timeout)
    live = Worker.objects.using(alias).filter(status__in=LIVE_WORKER_STATUSES).order_by()
    fresh = Q(last_heartbeat_at__gte=cutoff)
    counts = live.aggregate(
        online=Count("id", filter=Q(status="running") & fresh),
        stopping=Count("id", filter=Q(status="stopping") & fresh),
        stale=Count("id", filter=~fresh),
    )
    workers = [
        WorkerInfo(
            id=worker.id,
            hostname=worker.hostname,
            pid=worker.pid,
            status=worker.status,
            queues=worker.queues,
            concurrency=worker.concurrency,
            started_at=_utc(worker.started_at),
            last_heartbeat_at=_utc(worker.last_heartbeat_at),
            heartbeat_age=max(now - _utc(worker.last_heartbeat_at), timedelta(0)),
            state=_worker_state(worker.status, worker.last_heartbeat_at >= cutoff),
        )
        for worker in live.order_by("-last_heartbeat_at", "hostname", "pid")[:WORKER_LIST_LIMIT]
    ]
    return counts, workers


# -- presentation -----------------------------------------------------------------------------


def _local(value: datetime) -> datetime:
    return timezone.localtime(value) if settings.USE_TZ else value


def _zone_name(value: datetime) -> str:
    return _local(value).tzname() or "UTC"


def minute_chart(data: DashboardData) -> SafeString:
    buckets = data.per_minute
    zone = _zone_name(data.now)
    starts = [_local(bucket.start) for bucket in buckets]
    return bar_chart(
        f"Jobs per minute, last hour ({zone})",
        [f"{start:%H:%M} {zone}" for start in starts],
        _series(buckets, data.sections.dead_letters),
        tick_labels=[f"{start:%H:%M}" if start.minute % 10 == 0 else "" for start in starts],
        chart_id="chart-minute",
        description=_description(
            buckets, "minute", f"{starts[0]:%H:%M}", f"{starts[-1]:%H:%M}", data.sections
        ),
    )


def hour_chart(data: DashboardData) -> SafeString:
    buckets = data.per_hour
    zone = _zone_name(data.now)
    starts = [_local(bucket.start) for bucket in buckets]
    return bar_chart(
        f"Jobs per hour, last day ({zone})",
        [f"{start:%Y-%m-%d %H:%M} {zone}" for start in starts],
        _series(buckets, data.sections.dead_letters),
        tick_labels=[f"{start:%H:%M}" if start.hour % 3 == 0 else "" for start in starts],
        chart_id="chart-hour",
        description=_description(
            buckets, "hour", f"{starts[0]:%H:%M}", f"{starts[-1]:%H:%M}", data.sections
        ),
    )


def _series(buckets: list[Bucket], with_failed: bool) -> list[Series]:
    """Completed jobs, and failed ones (dead letters) for a user who may see those."""
    completed = Series("Completed", [b.completed for b in buckets], COMPLETED_COLOR, "completed")
    if not with_failed:
        return [completed]
    return [completed, Series("Failed", [b.failed for b in buckets], FAILED_COLOR, "failed")]


def _description(
    buckets: list[Bucket], unit: str, first: str, last: str, sections: Sections
) -> str:
    completed = sum(b.completed for b in buckets)
    bars = f"one per {unit} from {first} to {last}"
    if not sections.dead_letters:
        return f"Bars, {bars}: {completed:,} jobs completed in total."
    failed = sum(b.failed for b in buckets)
    return (
        f"Stacked bars, {bars}: {completed:,} jobs completed "
        f"and {failed:,} failed (moved to the dead letters) in total."
    )


def _admin_url(name: str, admin_site: AdminSite) -> str:
    """The URL of an admin page, or ``""`` while that page is not registered."""
    try:
        return reverse(f"{admin_site.name}:{name}", current_app=admin_site.name)
    except NoReverseMatch:
        return ""


def _app_url(admin_site: AdminSite) -> str:
    try:
        return reverse(
            f"{admin_site.name}:app_list",
            kwargs={"app_label": "soniq"},
            current_app=admin_site.name,
        )
    except NoReverseMatch:
        return ""


def refresh_seconds(raw: str | None) -> int | None:
    """``?refresh=N``: seconds between reloads, ``REFRESH_MIN`` to ``REFRESH_MAX``; anything
    else means no automatic reload."""
    if raw is None or not re.fullmatch(r"[0-9]{1,6}", raw.strip()):
        return None
    seconds = int(raw)
    return seconds if REFRESH_MIN <= seconds <= REFRESH_MAX else None


def table_context(data: DashboardData, admin_site: AdminSite) -> dict[str, Any]:
    """The rows of the dashboard's tables, links precomputed (``""``: no link)."""
    jobs_url = _admin_url("soniq_job_changelist", admin_site)
    # No link to a page the user may not see (they are shown no figure of it either).
    shown = data.sections
    dead_url = (
        _admin_url("soniq_deadletterjob_changelist", admin_site) if shown.dead_letters else ""
    )

    def job_link(**query: str) -> str:
        # The job list's status filter is Django's field filter, whose parameter is
        # status__exact: with it the sidebar shows the chosen status.
        if "status" in query:
            query["status__exact"] = query.pop("status")
        return f"{jobs_url}?{urlencode(query)}" if jobs_url and query else jobs_url

    def dead_link(**query: str) -> str:
        return f"{dead_url}?{urlencode(query)}" if dead_url and query else dead_url

    queue_rows = []
    for queue in data.queues:
        queue_rows.append(
            {
                "queue": queue,
                "href": job_link(queue=queue),
                "cells": [
                    {
                        "count": data.count(queue, status),
                        "href": job_link(queue=queue, status=status),
                    }
                    for status in data.statuses
                ],
                "total": data.queue_total(queue),
                "dead_letters": data.dead_letters.get(queue, 0),
                "dead_href": dead_link(queue=queue),
                "oldest_due_at": data.oldest_due.get(queue),
                "oldest_due_age": format_age(data.oldest_due_age(queue)),
                "due_href": job_link(queue=queue, status=JobStatus.QUEUED.value),
            }
        )
    totals = data.status_totals
    return {
        "queue_rows": queue_rows,
        "status_columns": [
            {"status": status, "total": totals.get(status, 0), "href": job_link(status=status)}
            for status in data.statuses
        ],
        "claimed_href": f"{jobs_url}?state=claimed" if jobs_url else "",
        "jobs_url": jobs_url,
        "dead_letters_url": dead_url,
        "workers_url": (_admin_url("soniq_worker_changelist", admin_site) if shown.workers else ""),
        "worker_rows": [
            {"worker": worker, "heartbeat_age": format_age(worker.heartbeat_age)}
            for worker in data.workers
        ],
        "workers_listed_all": (
            len(data.workers) == data.workers_online + data.workers_stale + data.workers_stopping
        ),
        "limit_rows": [
            {
                "limit": limit,
                "href": job_link(**{limit.kind: limit.name}),
                "running_href": job_link(
                    **{limit.kind: limit.name, "status": JobStatus.PROCESSING.value}
                ),
                "running_full": limit.concurrency_limit is not None
                and limit.running >= limit.concurrency_limit,
                "rate_full": limit.rate_count is not None
                and (limit.started or 0) >= limit.rate_count,
            }
            for limit in data.limits
        ],
    }


def sections_for(request: HttpRequest, admin_site: AdminSite) -> Sections:
    """The parts of the dashboard this user may see: those whose list page they may open."""
    return Sections(
        dead_letters=_may_view(request, admin_site, DeadLetterJob),
        workers=_may_view(request, admin_site, Worker),
    )


def _may_view(request: HttpRequest, admin_site: AdminSite, model: type[Model]) -> bool:
    """Whether ``model``'s own admin pages would answer this user (not 403, not missing)."""
    try:
        model_admin = admin_site.get_model_admin(model)
    except NotRegistered:
        return False
    return bool(model_admin.has_view_permission(request))


def dashboard_view(request: HttpRequest, admin_site: AdminSite) -> TemplateResponse:
    """The dashboard page. The caller checks the permission to open it
    (``admin_site.admin_view`` and ``soniq.view_job``); the dead letters and the workers are
    shown to whom may see their pages; the database is ``SONIQ["DATABASE"]``."""
    soniq_settings = build_settings(django_values=getattr(settings, "SONIQ", None))
    task_names()  # imports the jobs modules once: their tasks' limits are shown
    data = collect(
        soniq_settings.database,
        timezone.now(),
        soniq_settings.heartbeat_timeout,
        sections_for(request, admin_site),
        task_limits=registered_task_limits(),
        queue_limits=soniq_settings.queue_limits,
    )
    request.current_app = admin_site.name
    context: dict[str, Any] = {
        **admin_site.each_context(request),
        "title": TITLE,
        "data": data,
        "refresh": refresh_seconds(request.GET.get("refresh")),
        "chart_minute": minute_chart(data),
        "chart_hour": hour_chart(data),
        **breadcrumbs(("Soniq", _app_url(admin_site)), ("Dashboard", "")),
        "app_label": "soniq",
        **table_context(data, admin_site),
    }
    return TemplateResponse(request, TEMPLATE, context)

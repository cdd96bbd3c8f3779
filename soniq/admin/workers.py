"""Workers in the admin: which are alive, when each last heartbeated, what each is running."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from soniq.admin import display
from soniq.admin.common import SoniqModelAdmin, soniq_settings
from soniq.models import Job, Worker

# A job list on a worker's page stops here; the rest are one click away in the job list.
RUNNING_SHOWN = 50


def liveness(worker: Worker, heartbeat_timeout: float) -> str:
    """``alive``, ``stale`` (running, but silent for longer than the heartbeat timeout: the
    next recovery pass will declare it dead) or its final status."""
    if worker.status not in ("running", "stopping"):
        return str(worker.status)
    silent = timezone.now() - worker.last_heartbeat_at
    return "stale" if silent > timedelta(seconds=heartbeat_timeout) else "alive"


@admin.register(Worker)
class WorkerAdmin(SoniqModelAdmin):
    list_display = (
        "label",
        "liveness_display",
        "last_heartbeat",
        "running_count",
        "concurrency",
        "queues_display",
        "started_at",
        "version",
    )
    list_filter = ("status", ("last_heartbeat_at", admin.DateFieldListFilter))
    # The state: the first column of soniq_workers_hb_idx (status, last_heartbeat_at).
    sortable_by = ("liveness_display",)
    search_fields = ("hostname",)
    fields = (
        "id",
        "hostname",
        "pid",
        "liveness_display",
        "status",
        "last_heartbeat",
        "started_at",
        "stopped_at",
        "concurrency",
        "queues_display",
        "version",
        "running_jobs",
    )
    readonly_fields = ("liveness_display", "last_heartbeat", "queues_display", "running_jobs")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # One subquery per row on the partial index of running jobs, not one query per row.
        running = (
            Job.objects.filter(worker_id=OuterRef("id"), status="processing")
            .order_by()
            .values("worker_id")
            .annotate(n=Count("id"))
            .values("n")
        )
        queryset: QuerySet[Any] = super().get_queryset(request)
        annotated: QuerySet[Any] = queryset.annotate(
            running=Subquery(running, output_field=IntegerField())
        )
        return annotated

    @admin.display(description="worker", ordering="hostname")
    def label(self, obj: Worker) -> str:
        return f"{obj.hostname}:{obj.pid}"

    @admin.display(description="state", ordering="status")
    def liveness_display(self, obj: Worker) -> SafeString:
        state = liveness(obj, soniq_settings().heartbeat_timeout)
        return format_html('<span class="soniq-status soniq-status-{}">{}</span>', state, state)

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def last_heartbeat(self, obj: Worker) -> SafeString:
        return format_html(
            "{} ago ({})",
            timesince(obj.last_heartbeat_at),
            display.full_time(obj.last_heartbeat_at),
        )

    @admin.display(description="running")
    def running_count(self, obj: Worker) -> SafeString | int:
        count = getattr(obj, "running", None) or 0
        if not count:
            return 0
        url = reverse("admin:soniq_job_changelist")
        return format_html(
            '<a href="{}?worker_id={}&amp;status__exact=processing">{}</a>', url, obj.id, count
        )

    @admin.display(description="queues")
    def queues_display(self, obj: Worker) -> str:
        return ", ".join(obj.queues) if obj.queues else "every queue"

    @admin.display(description="running now")
    def running_jobs(self, obj: Worker) -> SafeString | str:
        jobs = list(
            Job.objects.using(obj._state.db or "default")
            .filter(worker_id=obj.id, status="processing")
            .order_by("claimed_at")[:RUNNING_SHOWN]
        )
        if not jobs:
            return "nothing"
        rows = format_html_join(
            "\n",
            '<li><a href="{}">{}</a> {} (attempt {}/{}, {})</li>',
            (
                (
                    reverse("admin:soniq_job_change", args=[job.pk]),
                    job.task_name,
                    str(job.pk)[:8],
                    job.attempts,
                    job.max_attempts,
                    f"started {timesince(job.started_at)} ago"
                    if job.started_at
                    else f"claimed {timesince(job.claimed_at) if job.claimed_at else '?'} ago, "
                    "not started",
                )
                for job in jobs
            ),
        )
        return format_html("<ul>{}</ul>", rows)

"""Jobs in the admin: find one, read its arguments, result and every failed attempt, and retry
or cancel it through soniq's own transitions."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from soniq.admin import display, known, serving
from soniq.admin.common import (
    Audit,
    SoniqModelAdmin,
    act_on,
    choices_filter,
    operator_backend,
    report,
    soniq_settings,
)
from soniq.core.operations import ActionResult, requester
from soniq.core.redaction import Redaction
from soniq.models import FINISHED_STATUSES, Job

JOBS = ("job", "jobs")

QueueFilter = choices_filter("queue", "queue", "queue", known.queue_names)


class FinishedFilter(admin.DateFieldListFilter):
    """Finished today / this week ...: only finished jobs have a finish time, and saying so
    lets PostgreSQL read the range from the partial index on finished jobs."""

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        filtered = super().queryset(request, queryset)
        if filtered is None:
            return queryset
        if any(key.endswith(("__gte", "__lt")) for key in self.used_parameters):
            filtered = filtered.filter(status__in=FINISHED_STATUSES)
        return filtered


TaskFilter = choices_filter("task", "task", "task_name", known.task_names)


class RunStateFilter(admin.SimpleListFilter):
    """Processing jobs are claimed (a worker holds them, none of their code ran yet) or running
    (``started_at`` written): an operator must not read the first as the second."""

    title = "processing state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("claimed", "claimed, not started"), ("running", "running")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() in ("claimed", "running"):
            return queryset.filter(
                status="processing", started_at__isnull=self.value() == "claimed"
            )
        return queryset


# The start of a job id: the 8 characters the lists show, or more.
ID_PREFIX = re.compile(r"[0-9a-f]{8,31}")


def _loaded(obj: Any, field: str) -> bool:
    """Whether the row has ``field`` and the query read it (a list defers big columns:
    touching one would load it, row by row)."""
    names = {f.attname for f in obj._meta.concrete_fields}
    return field in names and field not in obj.get_deferred_fields()


def uuid_or_none(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


class JobDataMixin:
    """The columns and detail fields jobs and dead letters share."""

    def masked_names(self) -> tuple[str, ...]:
        return soniq_settings().admin_masked_args

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: Any) -> str:
        return str(obj.id)[:8]

    scheduled = display.time_column("scheduled_at", "scheduled")
    created = display.time_column("created_at", "created")
    started = display.time_column("started_at", "started")

    @admin.display(description="attempts")
    def attempts_display(self, obj: Any) -> str:
        return f"{obj.attempts}/{obj.max_attempts}"

    @admin.display(description="args")
    def args_preview(self, obj: Any) -> str:
        return display.preview(obj.args, self.redaction(obj))

    @admin.display(description="arguments")
    def args_pretty(self, obj: Any) -> SafeString:
        return display.pretty_json(self.redaction(obj).value(obj.args))

    def redaction(self, obj: Any) -> Redaction:
        """How the row's data is shown: its masked values (from its arguments, and its result
        when the page read it) hidden wherever free text could repeat them. Kept on the row:
        every column of a page asks."""
        cached = obj.__dict__.get("_soniq_redaction")
        if cached is None:
            sources = [obj.args]
            if _loaded(obj, "result"):
                sources.append(obj.result)
            cached = obj.__dict__["_soniq_redaction"] = Redaction.of(self.masked_names(), *sources)
        redaction: Redaction = cached
        return redaction

    @admin.display(description="error history")
    def error_history(self, obj: Any) -> SafeString:
        return display.error_history(obj.errors, self.redaction(obj), obj.errors_dropped)

    @admin.display(description="dedup key")
    def dedup_key_display(self, obj: Any) -> str:
        if soniq_settings().admin_hide_dedup_keys:
            return "hidden (ADMIN_HIDE_DEDUP_KEYS)"
        if obj.dedup_key is None:
            return "-"
        redaction = self.redaction(obj)
        # For unique=True the key is a hash of the arguments: with a masked value among them,
        # a weak secret could be guessed from it offline.
        if redaction.secrets:
            return "set (hidden: the arguments hold masked values)"
        # A key the application built may embed a token ("reset:token=..."): redacted.
        return redaction.text(str(obj.dedup_key))

    @admin.display(description="lock")
    def lock_display(self, obj: Any) -> str:
        # An application-built key may embed a value the arguments mask: redacted like them.
        return "-" if obj.lock is None else self.redaction(obj).text(str(obj.lock))

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """The fieldsets, without the dedup key under ``ADMIN_HIDE_DEDUP_KEYS``."""
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        if not soniq_settings().admin_hide_dedup_keys:
            return fieldsets
        hidden = "dedup_key_display"
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f != hidden]})
            for name, options in fieldsets
        ]

    @admin.display(description="worker")
    def worker_link(self, obj: Any) -> SafeString | str:
        if obj.worker_id is None:
            return "-"
        url = reverse("admin:soniq_worker_change", args=[obj.worker_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.worker_id)[:8])

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """An id, or the start of one as the lists show it, finds jobs through the primary
        key (a range of it); any other text searches task names."""
        term = search_term.strip()
        if not term:
            return queryset, False
        job_id = uuid_or_none(term)
        if job_id is not None:
            return queryset.filter(pk=job_id), False
        prefix = term.replace("-", "").lower()
        if ID_PREFIX.fullmatch(prefix):
            # UUIDs sort as their hex digits on both databases: a prefix is a key range.
            low = uuid.UUID(prefix.ljust(32, "0"))
            high = uuid.UUID(prefix.ljust(32, "f"))
            return queryset.filter(pk__gte=low, pk__lte=high), False
        return queryset.filter(task_name__icontains=term), False


@admin.register(Job)
class JobAdmin(JobDataMixin, SoniqModelAdmin):
    list_display = (
        "short_id",
        "task_name",
        "status_display",
        "queue",
        "priority",
        "attempts_display",
        "abort_display",
        "worker_link",
        "created",
        "scheduled",
        "started",
        "finished",
        "args_preview",
    )
    list_display_links = ("short_id", "task_name")
    list_filter = (
        "status",
        RunStateFilter,
        QueueFilter,
        TaskFilter,
        ("created_at", admin.DateFieldListFilter),
        ("finished_at", FinishedFilter),
    )
    search_fields = ("task_name",)  # shows the box; get_search_results decides
    search_help_text = "A job id (or its first 8+ characters), or part of a task name."
    # Only orders an index serves (the primary key, soniq_jobs_created_idx): sorting a million
    # rows by another column takes seconds.
    sortable_by = ("short_id", "created")
    actions = ("retry_now", "cancel", "abort")
    change_list_template = "admin/soniq/job/change_list.html"
    fieldsets = (
        (
            None,
            {"fields": ("id", "task_name", "status_display", "queue", "priority", "lock_display")},
        ),
        (
            "Timing",
            {
                "fields": (
                    "scheduled_at",
                    "created_at",
                    "claimed_at",
                    "started_at",
                    "finished_at",
                )
            },
        ),
        (
            "Attempts",
            {
                "fields": (
                    "attempts_display",
                    "snoozes",
                    "abort_display",
                    "worker_losses",
                    "suspicion_display",
                    "worker_link",
                    "dedup_key_display",
                )
            },
        ),
        ("Arguments and result", {"fields": ("args_pretty", "result_pretty")}),
        ("Errors", {"fields": ("error_history",)}),
    )
    readonly_fields = (
        "status_display",
        "suspicion_display",
        "attempts_display",
        "worker_link",
        "args_pretty",
        "result_pretty",
        "error_history",
        "dedup_key_display",
        "lock_display",
    )

    finished = display.time_column("finished_at", "finished")

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Job) -> SafeString:
        if obj.status == "processing" and obj.started_at is None:
            return display.status_badge("claimed", "held by its worker, not started yet")
        why = serving.why_unserved(obj)
        if why is not None:
            return format_html(
                '{} <span class="soniq-unserved" title="{}">{}</span>',
                display.status_badge(obj.status),
                f"{why}: it stays queued until a worker that registered {obj.task_name} "
                f"and serves queue {obj.queue} runs",
                why,
            )
        return display.status_badge(obj.status)

    @admin.display(description="abort requested")
    def abort_display(self, obj: Job) -> str:
        if obj.abort_requested_at is None:
            return "-"
        when = timezone.localtime(obj.abort_requested_at).strftime("%Y-%m-%d %H:%M:%S")
        return f"by {obj.abort_requested_by or '(unknown)'} at {when}"

    @admin.display(description="after a worker died")
    def suspicion_display(self, obj: Job) -> str:
        return "-" if not obj.suspicion else str(obj.get_suspicion_display())

    def list_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        # The list shows neither: a result or an error history can weigh megabytes a row.
        return queryset.defer("result", "errors")

    @admin.display(description="result")
    def result_pretty(self, obj: Job) -> SafeString | str:
        if obj.result is None:
            return "-"
        return display.pretty_json(self.redaction(obj).value(obj.result))

    # -- permissions ------------------------------------------------------------------------

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("soniq.retry_job")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("soniq.cancel_job")

    def has_abort_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("soniq.abort_job")

    # -- actions ----------------------------------------------------------------------------

    @admin.action(description="Retry now (queued, cancelled)", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        report(request, self._apply(request, queryset, "retry"), "Retried", JOBS)

    @admin.action(description="Cancel (queued only)", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        report(request, self._apply(request, queryset, "cancel"), "Cancelled", JOBS)

    @admin.action(description="Abort (running: stop it; queued: cancel)", permissions=["abort"])
    def abort(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        report(request, self._apply(request, queryset, "abort"), "Asked to abort", JOBS)

    def _apply(self, request: HttpRequest, queryset: QuerySet[Job], kind: str) -> ActionResult:
        backend = operator_backend()
        if kind == "retry":
            return act_on(request, queryset, backend.retry_jobs_sync, Audit("Retried", Job))
        if kind == "abort":
            by = requester(f"admin:{request.user.get_username()}")
            return act_on(
                request,
                queryset,
                lambda ids: backend.abort_jobs_sync(ids, by),
                Audit("Abort requested", Job),
            )
        return act_on(request, queryset, backend.cancel_jobs_sync, Audit("Cancelled", Job))

    # -- one job's buttons ------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("dashboard/", wrap(self.dashboard), name="soniq_dashboard"),
            path(
                "<path:object_id>/retry/",
                wrap(require_POST(self.retry_one)),
                name="soniq_job_retry",
            ),
            path(
                "<path:object_id>/cancel/",
                wrap(require_POST(self.cancel_one)),
                name="soniq_job_cancel",
            ),
            path(
                "<path:object_id>/abort/",
                wrap(require_POST(self.abort_one)),
                name="soniq_job_abort",
            ),
            *super().get_urls(),
        ]

    def dashboard(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied("soniq.view_job is required")
        from soniq.admin.dashboard import dashboard_view

        return dashboard_view(request, self.admin_site)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra = {"dashboard_url": reverse("admin:soniq_dashboard"), **(extra_context or {})}
        current = soniq_settings()
        live = serving.live_serving(current.database, timezone.now(), current.heartbeat_timeout)
        # The status column reads it while the list renders: render here, inside.
        with serving.serving_for_rendering(live):
            response = super().changelist_view(request, extra)
            if isinstance(response, TemplateResponse):
                response.render()
        return response

    def retry_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        self.require(request, "retry_job")
        job = self.object_or_404(request, object_id)
        one = self.get_queryset(request).filter(pk=job.pk)
        report(request, self._apply(request, one, "retry"), "Retried", JOBS)
        return HttpResponseRedirect(reverse("admin:soniq_job_change", args=[job.pk]))

    def cancel_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        self.require(request, "cancel_job")
        job = self.object_or_404(request, object_id)
        one = self.get_queryset(request).filter(pk=job.pk)
        report(request, self._apply(request, one, "cancel"), "Cancelled", JOBS)
        return HttpResponseRedirect(reverse("admin:soniq_job_change", args=[job.pk]))

    def abort_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        self.require(request, "abort_job")
        job = self.object_or_404(request, object_id)
        one = self.get_queryset(request).filter(pk=job.pk)
        report(request, self._apply(request, one, "abort"), "Asked to abort", JOBS)
        return HttpResponseRedirect(reverse("admin:soniq_job_change", args=[job.pk]))

    def row_buttons(self, request: HttpRequest, obj: Job) -> list[dict[str, str]]:
        buttons = []
        if obj.status in ("queued", "cancelled") and self.has_retry_permission(request):
            label = "Run now" if obj.status == "queued" else "Requeue"
            buttons.append({"url": reverse("admin:soniq_job_retry", args=[obj.pk]), "label": label})
        if obj.status == "queued" and self.has_cancel_permission(request):
            buttons.append(
                {"url": reverse("admin:soniq_job_cancel", args=[obj.pk]), "label": "Cancel"}
            )
        if obj.status == "processing" and self.has_abort_permission(request):
            buttons.append(
                {"url": reverse("admin:soniq_job_abort", args=[obj.pk]), "label": "Abort"}
            )
        return buttons

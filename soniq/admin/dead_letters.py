"""Dead letters in the admin: read why a job stopped, requeue it (one, the selected ones, or
every one the current filter matches, after a confirmation that shows the count), or delete."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from soniq.admin import display
from soniq.admin.common import (
    Audit,
    SoniqModelAdmin,
    UnsortableOrder,
    act_on,
    choices_filter,
    confirm,
    model_breadcrumbs,
    operator_backend,
    report,
)
from soniq.admin.jobs import JobDataMixin, QueueFilter, TaskFilter
from soniq.admin.last_error import LastError
from soniq.core.operations import ActionResult
from soniq.core.redaction import Redaction
from soniq.core.status import DEAD_LETTER_REASONS
from soniq.models import DeadLetterJob, Job

DEAD_LETTERS = ("dead letter", "dead letters")
# The reasons soniq writes: a fixed list instead of Django's SELECT DISTINCT over the whole
# table on every page load.
ReasonFilter = choices_filter("reason", "reason", "reason", lambda: DEAD_LETTER_REASONS)
# Characters of the last error's class read for the list (a class name is short; a crafted
# one is cut).
ERROR_TYPE_CHARS = 200


@admin.register(DeadLetterJob)
class DeadLetterJobAdmin(JobDataMixin, SoniqModelAdmin):
    # What tells dead letters apart, narrow enough for a 1400 px screen next to the filters:
    # priority, arguments, creation time and worker are on each one's page. The last error
    # wraps anywhere (a URL in it would otherwise widen the table past the screen).
    list_display = (
        "short_id",
        "task_name",
        "reason",
        "last_error",
        "queue",
        "attempts_display",
        "dead_lettered",
    )
    list_display_links = ("short_id", "task_name")
    list_filter = (
        ReasonFilter,
        QueueFilter,
        TaskFilter,
        ("dead_lettered_at", admin.DateFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("task_name",)
    search_help_text = "A job id (or its first 8+ characters), or part of a task name."
    # The primary key and soniq_dead_at_idx.
    sortable_by = ("short_id", "dead_lettered")
    actions = ("requeue", "delete_dead_letters")
    change_list_template = "admin/soniq/deadletterjob/change_list.html"
    fieldsets = (
        (None, {"fields": ("id", "task_name", "reason", "queue", "priority", "lock_display")}),
        ("Timing", {"fields": ("scheduled_at", "created_at", "started_at", "dead_lettered_at")}),
        ("Attempts", {"fields": ("attempts_display", "worker_link", "dedup_key_display")}),
        ("Arguments", {"fields": ("args_pretty",)}),
        ("Errors", {"fields": ("error_history",)}),
    )
    readonly_fields = (
        "attempts_display",
        "worker_link",
        "args_pretty",
        "error_history",
        "dedup_key_display",
        "lock_display",
    )

    def list_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        # Not the error history (a traceback per attempt, megabytes a row): only the start of
        # its last entry, cut by the database.
        shown: QuerySet[Any] = queryset.defer("errors").annotate(
            last_error_type=LastError("error_type", ERROR_TYPE_CHARS),
            last_error_message=LastError("message", display.PREVIEW_SOURCE_CHARS),
        )
        return shown

    @admin.display(description="last error")
    def last_error(self, obj: DeadLetterJob) -> str:
        error_type = getattr(obj, "last_error_type", None)
        message = getattr(obj, "last_error_message", None)
        if error_type is None and message is None:
            return "-"
        redaction = self.redaction(obj)
        # The class without its module ("HTTPError", not "requests.exceptions.HTTPError").
        short_type = (error_type or "").rsplit(".", 1)[-1]
        text = f"{short_type}: {_message_text(message or '', redaction)}"
        return display.shown_text(text, redaction)

    dead_lettered = display.time_column("dead_lettered_at", "dead lettered")

    # -- permissions ------------------------------------------------------------------------

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("soniq.requeue_deadletterjob")

    def has_remove_permission(self, request: HttpRequest) -> bool:
        # Django's own delete permission, granted through soniq's transition only.
        return request.user.has_perm("soniq.delete_deadletterjob")

    # -- actions on a selection -------------------------------------------------------------

    @admin.action(description="Requeue selected dead letters", permissions=["requeue"])
    def requeue(self, request: HttpRequest, queryset: QuerySet[DeadLetterJob]) -> Any:
        page = confirm(
            self,
            request,
            queryset,
            action="requeue",
            title="Requeue dead letters",
            question="Requeue {count} dead letter(s)? Each goes back to the queue with its "
            "full number of attempts; its error history is kept.",
            button="Yes, requeue them",
        )
        if page is not None:
            return page
        report(
            request,
            self._requeue(request, queryset),
            "Requeued",
            DEAD_LETTERS,
        )
        return None

    @admin.action(description="Delete selected dead letters", permissions=["remove"])
    def delete_dead_letters(self, request: HttpRequest, queryset: QuerySet[DeadLetterJob]) -> Any:
        page = confirm(
            self,
            request,
            queryset,
            action="delete_dead_letters",
            title="Delete dead letters",
            question="Delete {count} dead letter(s) for good? This cannot be undone.",
            button="Yes, delete them",
        )
        if page is not None:
            return page
        report(
            request,
            act_on(
                request,
                queryset,
                operator_backend().delete_dead_letters_sync,
                Audit("Deleted the dead letter", DeadLetterJob, deleted=True),
            ),
            "Deleted",
            DEAD_LETTERS,
        )
        return None

    # -- every dead letter the filter matches, and one at a time ----------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "requeue-matching/",
                wrap(self.requeue_matching),
                name="soniq_deadletterjob_requeue_matching",
            ),
            path(
                "<path:object_id>/requeue/",
                wrap(require_POST(self.requeue_one)),
                name="soniq_deadletterjob_requeue",
            ),
            *super().get_urls(),
        ]

    def matching(self, request: HttpRequest) -> QuerySet[DeadLetterJob]:
        """What the change list shows for the same query string (filters and search)."""
        changelist = self.get_changelist_instance(request)
        queryset: QuerySet[DeadLetterJob] = changelist.get_queryset(request)
        return queryset

    def requeue_matching(self, request: HttpRequest) -> HttpResponse:
        self.require(request, "requeue_deadletterjob")
        changelist_url = reverse("admin:soniq_deadletterjob_changelist")
        query = request.GET.urlencode()
        back = f"{changelist_url}?{query}" if query else changelist_url
        try:
            queryset = self.matching(request)
        except (IncorrectLookupParameters, UnsortableOrder):
            return HttpResponseRedirect(changelist_url)
        if request.method == "POST":
            report(
                request,
                self._requeue(request, queryset),
                "Requeued",
                DEAD_LETTERS,
            )
            return HttpResponseRedirect(back)
        count = queryset.count()
        title = "Requeue every matching dead letter"
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "count": count,
            "question": f"Requeue all {count} dead letter(s) that match the current filter? "
            "Each goes back to the queue with its full number of attempts.",
            "button": "Yes, requeue them all",
            "filters": _describe(request.GET.dict()),
            "back": back,
            **model_breadcrumbs(self.admin_site, self.model._meta, back, title),
        }
        return TemplateResponse(request, "admin/soniq/requeue_matching.html", context)

    def requeue_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        self.require(request, "requeue_deadletterjob")
        dead = self.object_or_404(request, object_id)
        result = self._requeue(request, self.get_queryset(request).filter(pk=dead.pk))
        report(request, result, "Requeued", DEAD_LETTERS)
        if result.applied:
            return HttpResponseRedirect(reverse("admin:soniq_job_change", args=[dead.pk]))
        return HttpResponseRedirect(reverse("admin:soniq_deadletterjob_change", args=[dead.pk]))

    def _requeue(self, request: HttpRequest, queryset: QuerySet[DeadLetterJob]) -> ActionResult:
        # Logged on the job: the row is a job again, and its page is where the history shows.
        audit = Audit("Requeued from the dead letters", Job)
        return act_on(request, queryset, operator_backend().requeue_dead_letters_sync, audit)

    def row_buttons(self, request: HttpRequest, obj: DeadLetterJob) -> list[dict[str, str]]:
        if not self.has_requeue_permission(request):
            return []
        url = reverse("admin:soniq_deadletterjob_requeue", args=[obj.pk])
        return [{"url": url, "label": "Requeue"}]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra = dict(extra_context or {})
        if self.has_requeue_permission(request):
            query = urlencode({k: v for k, v in request.GET.items() if k not in ("p", "o", "all")})
            url = reverse("admin:soniq_deadletterjob_requeue_matching")
            extra["requeue_matching_url"] = f"{url}?{query}" if query else url
        return super().changelist_view(request, extra)


def _message_text(message: str, redaction: Redaction) -> str:
    """A last error's message as the list shows it. A structured message (JSON text, whole)
    is masked as a structure first, as on the dead letter's page; text, or a structure the
    database cut, is redacted as text by the caller."""
    if message[:1] not in ("{", "["):
        return message
    try:
        parsed = json.loads(message)
    except ValueError:
        return message
    return str(redaction.value(parsed))


def _describe(query: dict[str, str]) -> list[tuple[str, str]]:
    """The filters in force, for the confirmation page."""
    labels = {"q": "search"}
    return [(labels.get(key, key), value) for key, value in sorted(query.items())]

"""Schedules in the admin: their timing, the next five fire times, pause, resume, run now.

Every action goes through :class:`soniq.schedule_service.SchedulerService`, the object behind
``app.scheduler``, on Django's connection.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from soniq.admin import display
from soniq.admin.common import SoniqModelAdmin, soniq_settings
from soniq.core.errors import SoniqError
from soniq.core.periodic import ScheduleDefinition, upcoming_slots
from soniq.core.redaction import Redaction
from soniq.django_schedules import scheduler_service
from soniq.models import Schedule
from soniq.schedule_service import SchedulerService

PREVIEW_SLOTS = 5
# A paused schedule's next fire: none until it is resumed.
PAUSED = "paused"


def definition_of(schedule: Schedule) -> ScheduleDefinition:
    return ScheduleDefinition(
        name=schedule.name,
        task_name=schedule.task_name,
        cron=schedule.cron,
        interval=schedule.interval_seconds,
        timezone=schedule.timezone,
        args=schedule.args or {},
        queue=schedule.queue,
        priority=schedule.priority,
        catch_up=schedule.catch_up,
        catch_up_window=schedule.catch_up_window_seconds,
    )


def service(*, builds_jobs: bool) -> SchedulerService:
    """``app.scheduler``'s logic on Django's connection. Run-now builds the job with the app
    that registered it (its retries and timeout), found as the worker finds it; pausing and
    resuming need no app, and work even where none can be chosen."""
    from soniq import _discovery
    from soniq.admin.known import task_names
    from soniq.core.errors import ConfigurationError

    settings = soniq_settings()
    if not builds_jobs:
        return scheduler_service(settings.database)
    task_names()  # imports the jobs modules once
    try:
        app = _discovery.choose_app(settings.app)
    except ConfigurationError as exc:
        raise ConfigurationError(f"cannot build the schedule's job: {exc}") from exc
    return scheduler_service(settings.database, app)


def run(call: Callable[[SchedulerService], Coroutine[Any, Any, Any]], *, builds_jobs: bool) -> Any:
    async def body() -> Any:
        return await call(service(builds_jobs=builds_jobs))

    return async_to_sync(body)()


@admin.register(Schedule)
class ScheduleAdmin(SoniqModelAdmin):
    # The zone is in the timing of a cron schedule (an interval ignores it): no column of its own.
    list_display = (
        "name",
        "task_name",
        "timing",
        "status_display",
        "last_fire",
        "next_fire",
        "source",
    )
    list_filter = ("status", "source")
    # The unique index on the name (the default order too).
    sortable_by = ("name",)
    search_fields = ("name", "task_name")
    actions = ("pause", "resume", "run_now")
    fields = (
        "name",
        "task_name",
        "timing",
        "timezone",
        "status_display",
        "catch_up",
        "catch_up_window_seconds",
        "queue",
        "priority",
        "args_pretty",
        "source",
        "last_fired_at",
        "next_fire_at",
        "next_fires",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("timing", "status_display", "args_pretty", "next_fires")

    @admin.display(description="timing")
    def timing(self, obj: Schedule) -> str:
        if obj.cron or obj.interval_seconds is None:
            return definition_of(obj).describe()
        return f"every {display.duration(obj.interval_seconds)}"

    @admin.display(description="last fire", ordering="last_fired_at")
    def last_fire(self, obj: Schedule) -> SafeString | str:
        return display.compact_time(obj.last_fired_at)

    @admin.display(description="next fire", ordering="next_fire_at")
    def next_fire(self, obj: Schedule) -> SafeString | str:
        if obj.status != "active":
            return PAUSED
        return display.compact_time(obj.next_fire_at)

    def time_display(self, name: str) -> Callable[[Any], Any]:
        """The fire times in the schedule's own zone (with UTC beside when that differs), the
        next one "paused" while the schedule is; other times as on every page."""
        if name not in ("last_fired_at", "next_fire_at"):
            return super().time_display(name)
        field = self.model._meta.get_field(name)

        @admin.display(description=str(field.verbose_name))
        def show(obj: Schedule) -> Any:
            if name == "next_fire_at" and obj.status != "active":
                return PAUSED
            value = getattr(obj, name)
            if value is None:
                return self.get_empty_value_display()
            return display.full_time(value, definition_of(obj).zone)

        show.__name__ = name
        return show

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Schedule) -> SafeString:
        return display.status_badge(obj.status)

    @admin.display(description="arguments")
    def args_pretty(self, obj: Schedule) -> SafeString:
        redaction = Redaction.of(self.masked_names(), obj.args)
        return display.pretty_json(redaction.value(obj.args))

    @admin.display(description="next fire times")
    def next_fires(self, obj: Schedule) -> SafeString | str:
        if obj.status != "active" or obj.next_fire_at is None:
            return "paused: resuming starts from the next slot after that moment"
        slots = upcoming_slots(definition_of(obj), obj.next_fire_at, PREVIEW_SLOTS)
        zone = definition_of(obj).zone
        items = format_html_join(
            "\n", "<li>{}</li>", ((display.full_time(slot, zone),) for slot in slots)
        )
        return format_html('<ol class="soniq-next-fires">{}</ol>', items)

    # -- permissions and actions ------------------------------------------------------------

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("soniq.pause_schedule")

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("soniq.run_schedule")

    @admin.action(description="Pause selected schedules", permissions=["pause"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, "Paused", lambda s, name: s.pause(name))

    @admin.action(description="Resume selected schedules", permissions=["pause"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, "Resumed", lambda s, name: s.resume(name))

    @admin.action(description="Run selected schedules now", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(
            request,
            queryset,
            "Enqueued a job for",
            lambda s, name: s.run_now(name),
            builds_jobs=True,
        )

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Schedule],
        done: str,
        call: Callable[[SchedulerService, str], Coroutine[Any, Any, Any]],
        *,
        builds_jobs: bool = False,
    ) -> None:
        names = list(queryset.values_list("name", flat=True))

        async def body(scheduler: SchedulerService) -> tuple[dict[str, Any], list[str]]:
            succeeded: dict[str, Any] = {}  # name -> what the call returned (run-now: job id)
            failures = []
            for name in names:
                try:
                    succeeded[name] = await call(scheduler, name)
                except (SoniqError, LookupError) as exc:
                    failures.append(f"{name}: {exc}")
            return succeeded, failures

        try:
            succeeded, failures = run(body, builds_jobs=builds_jobs)
        except SoniqError as exc:
            messages.error(request, f"Nothing done: {exc}")
            return
        if succeeded:
            plural = "schedule" if len(succeeded) == 1 else "schedules"
            messages.success(request, f"{done} {len(succeeded)} {plural}.")
            self._log(request, queryset, done, succeeded)
        for failure in failures:
            messages.error(request, failure)

    def _log(
        self,
        request: HttpRequest,
        queryset: QuerySet[Schedule],
        done: str,
        succeeded: dict[str, Any],
    ) -> None:
        """One admin-log entry per schedule changed, on its History page."""
        user_id = request.user.pk
        assert user_id is not None  # the admin serves staff users only
        for schedule in queryset.filter(name__in=list(succeeded)):
            job_id = succeeded[schedule.name]
            message = f"Ran now: enqueued job {job_id}" if job_id else done
            LogEntry.objects.log_actions(user_id, [schedule], CHANGE, message)

    # -- one schedule's buttons -------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        # One explicit path per verb: a catch-all "<id>/<verb>/" would shadow ".../change/".
        return [
            *(
                path(
                    f"<path:object_id>/{verb}/",
                    wrap(require_POST(self.act_on_one)),
                    {"verb": verb},
                    name=f"soniq_schedule_{verb}",
                )
                for verb in self.VERBS
            ),
            *super().get_urls(),
        ]

    VERBS: dict[str, tuple[str, str]] = {
        "pause": ("pause_schedule", "Paused"),
        "resume": ("pause_schedule", "Resumed"),
        "run": ("run_schedule", "Enqueued a job for"),
    }

    def act_on_one(self, request: HttpRequest, object_id: str, verb: str) -> HttpResponse:
        if verb not in self.VERBS:
            return HttpResponseRedirect(reverse("admin:soniq_schedule_changelist"))
        codename, done = self.VERBS[verb]
        self.require(request, codename)
        schedule = self.object_or_404(request, object_id)
        calls: dict[str, Callable[[SchedulerService, str], Coroutine[Any, Any, Any]]] = {
            "pause": lambda s, name: s.pause(name),
            "resume": lambda s, name: s.resume(name),
            "run": lambda s, name: s.run_now(name),
        }
        queryset = self.get_queryset(request).filter(pk=schedule.pk)
        self._each(request, queryset, done, calls[verb], builds_jobs=verb == "run")
        return HttpResponseRedirect(reverse("admin:soniq_schedule_change", args=[schedule.pk]))

    def row_buttons(self, request: HttpRequest, obj: Schedule) -> list[dict[str, str]]:
        buttons = []
        if self.has_pause_permission(request):
            verb = "pause" if obj.status == "active" else "resume"
            buttons.append(
                {
                    "url": reverse(f"admin:soniq_schedule_{verb}", args=[obj.pk]),
                    "label": verb.capitalize(),
                }
            )
        if self.has_run_permission(request):
            buttons.append(
                {
                    "url": reverse("admin:soniq_schedule_run", args=[obj.pk]),
                    "label": "Run now",
                }
            )
        return buttons

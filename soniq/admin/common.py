"""What every soniq admin page shares: settings, the operator backend, read-only pages that
stay fast on big tables, filters that cost no query, and how action outcomes are reported."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import django
from django.conf import settings as django_settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.admin.utils import label_for_field, unquote
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import DateTimeField, Model, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.text import capfirst

from soniq.admin import display
from soniq.core.operations import BATCH_SIZE, ActionResult
from soniq.core.settings import SoniqSettings, build_settings
from soniq.django_backend import DjangoBackend
from soniq.models import DeadLetterJob, Job

# What the models' __str__ reads: enough for the admin log's object names.
REPR_FIELDS = frozenset({"id", "task_name", "status", "reason", "name", "cron", "interval_seconds"})
# Columns holding what applications put in a job: never filtered on from a URL (masking).
HIDDEN_FIELDS = frozenset({"args", "result", "errors", "dedup_key"})
# Past this many rows a list page stops counting and says "more than".
COUNT_LIMIT = 10_000
# Refusal reasons listed one by one in a message; beyond, only the count per reason.
REFUSALS_SHOWN = 5
# Django 6.0 renders the admin's breadcrumbs as an ordered list (<ol class="breadcrumbs">, one
# <li> per step, the current page's with aria-current="page"); 5.2 as <div class="breadcrumbs">,
# links separated by ">". admin/soniq/_breadcrumbs.html writes the pages' own steps either way.
BREADCRUMBS_AS_LIST = django.VERSION >= (6, 0)


def soniq_settings() -> SoniqSettings:
    return build_settings(django_values=getattr(django_settings, "SONIQ", None))


def operator_backend() -> DjangoBackend:
    """Actions run on Django's connection to soniq's alias: they join the request's
    transaction, and ``ATOMIC_REQUESTS`` rolls them back with it."""
    return DjangoBackend(soniq_settings().database)


class CappedCountPaginator(Paginator):  # type: ignore[type-arg]
    """Counts at most :data:`COUNT_LIMIT` + 1 rows (a LIMIT inside the COUNT), so a page of a
    million-row table never counts them all; pages past the limit are reached by filtering."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        # Only the ids: the list's annotations (a row's last error) are not computed to count.
        capped = queryset.order_by().values("pk")[: COUNT_LIMIT + 1].count()
        self.capped = capped > COUNT_LIMIT
        return min(capped, COUNT_LIMIT)

    capped = False


class _CappedOpts:
    """A model's ``_meta`` whose names say the count is a lower bound."""

    def __init__(self, opts: Any) -> None:
        self._opts = opts
        self.verbose_name = f"{opts.verbose_name} (filter to narrow the list)"
        self.verbose_name_plural = f"{opts.verbose_name_plural} (filter to narrow the list)"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._opts, name)


class _CappedChangeListView:
    """A change list as Django's own ``admin/pagination.html`` should show it once the count
    stopped at :data:`COUNT_LIMIT`: "more than 10000 jobs (filter to narrow the list)".
    Everything else (page links, query strings) is the change list's."""

    def __init__(self, changelist: ChangeList) -> None:
        self._changelist = changelist
        self.result_count = f"more than {changelist.result_count}"
        self.opts = _CappedOpts(changelist.opts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._changelist, name)


class UnsortableOrder(Exception):
    """``?o=`` asked for an order the list does not offer (see :class:`SoniqChangeList`)."""


class SoniqChangeList(ChangeList):
    """Django's change list, reading what the model admin's :meth:`~SoniqModelAdmin.
    list_queryset` says, sorted only by the columns in ``sortable_by``; and ``capped_view`` for
    ``admin/soniq/pagination.html``: that template includes Django's own pagination, so the
    paginator is marked up as the Django version in use marks it up (a ``<p>`` in 5.2, a
    ``<nav>`` with a list of pages in 6)."""

    @cached_property
    def capped_view(self) -> _CappedChangeListView:
        return _CappedChangeListView(self)

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        queryset = super().get_queryset(request, exclude_parameters)
        model_admin: Any = self.model_admin
        shown: QuerySet[Any] = model_admin.list_queryset(queryset)
        return shown

    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[Any]:
        """Django sorts by any column ``?o=`` names, whatever ``sortable_by`` says (that only
        hides the header links): refuse every other column before a query sorts by it. Sorting
        a big table by a column no index keeps in order reads and sorts all its rows."""
        refused = self.unsortable_columns()
        if refused:
            offered = " or ".join(self._label(name) for name in self.sortable_by or ()) or "nothing"
            raise UnsortableOrder(
                f"This list cannot be sorted by {', '.join(refused)}: only by {offered}, "
                "the orders an index keeps. It is shown in its default order."
            )
        ordering: list[Any] = super().get_ordering(request, queryset)
        return ordering

    def unsortable_columns(self) -> list[str]:
        """The columns ``?o=`` names outside ``sortable_by`` (or the parts it cannot read)."""
        raw = self.params.get(ORDER_VAR) or ""
        refused = []
        for part in raw.split(".") if raw else []:
            index = part.rpartition("-")[2]
            if not index.isdigit() or int(index) >= len(self.list_display):
                refused.append(repr(part))
                continue
            name = self.list_display[int(index)]
            if name not in (self.sortable_by or ()):
                refused.append(self._label(name))
        return refused

    def _label(self, name: Any) -> str:
        if name == "action_checkbox":  # its label is the "select all" box itself
            return "the selection column"
        try:
            return str(label_for_field(name, self.model, self.model_admin))
        except AttributeError:
            return str(name)


def without_order(request: HttpRequest) -> str:
    """The request's path and query string without ``?o=``."""
    query = request.GET.copy()
    query.pop(ORDER_VAR, None)
    return f"{request.path}?{query.urlencode()}" if query else request.path


def breadcrumbs(*steps: tuple[str, str]) -> dict[str, Any]:
    """The context of ``admin/soniq/_breadcrumbs.html``: after Home, each ``(label, url)``
    step (``url`` empty for plain text), the last one being the current page."""
    return {"soniq_breadcrumbs": list(steps), "soniq_breadcrumbs_as_list": BREADCRUMBS_AS_LIST}


def model_breadcrumbs(
    admin_site: admin.AdminSite, opts: Any, changelist_url: str, title: str
) -> dict[str, Any]:
    """Home > app > model list > ``title``, as on Django's own pages of one model."""
    app_url = reverse(f"{admin_site.name}:app_list", kwargs={"app_label": opts.app_label})
    return breadcrumbs(
        (str(opts.app_config.verbose_name), app_url),
        (str(capfirst(opts.verbose_name_plural)), changelist_url),
        (title, ""),
    )


# Where a row that is gone may have moved, keeping its id: a job that ran out of attempts is a
# dead letter, a requeued dead letter is a job again. Links to the old page (the admin log's
# "Recent actions" and History) follow it there.
MOVES: dict[type[Model], tuple[type[Model], str]] = {
    Job: (DeadLetterJob, "This job has since moved to the dead letters."),
    DeadLetterJob: (Job, "This dead letter has since been requeued: it is a job again."),
}


class SoniqModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only pages (rows change only through soniq's transitions), counted cheaply. On an
    object's page, times are shown to the second with their zone; the page of a job that has
    moved to the dead letters (or back) redirects to where it is now."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    # Facet counts ("Show counts", ?_facets) run one uncapped COUNT per filter choice over the
    # whole table: never offered.
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    # The columns a list may be sorted by: those an index keeps in order (see each model's
    # Meta indexes). A request for any other is refused (SoniqChangeList.get_ordering).
    sortable_by: ClassVar[tuple[str, ...]] = ()
    change_form_template = "admin/soniq/change_form.html"
    change_list_template = "admin/soniq/change_list.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SoniqChangeList

    def list_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """What the list page reads of each row (a model admin leaves out big columns)."""
        return queryset

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        try:
            return super().changelist_view(request, extra_context)
        except UnsortableOrder as refused:
            # Back to the same list (filters, search, page kept) in its default order, saying
            # why: clearer than Django's bare "?e=1" redirect, which drops the filters too.
            messages.warning(request, str(refused))
            return HttpResponseRedirect(without_order(request))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Also hides Django's bulk "delete selected", which would bypass soniq's transitions.
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).using(soniq_settings().database)

    def masked_names(self) -> tuple[str, ...]:
        return soniq_settings().admin_masked_args

    def lookup_allowed(self, lookup: str, value: str, request: Any = None) -> bool:
        """Refuse URL filters on job data: ``?args__password__startswith=h`` would let anyone
        who can see the list read a masked value one character at a time."""
        if lookup.split(LOOKUP_SEP, 1)[0] in HIDDEN_FIELDS:
            return False
        return bool(super().lookup_allowed(lookup, value, request))

    def require(self, request: HttpRequest, codename: str) -> None:
        """Refuse a request (a forged POST included) from a user without the permission, or
        who may not even see these rows."""
        if not request.user.has_perm(f"soniq.{codename}"):
            raise PermissionDenied(f"soniq.{codename} is required")
        if not self.has_view_permission(request):
            raise PermissionDenied(f"viewing {self.model._meta.verbose_name_plural} is required")

    def object_or_404(self, request: HttpRequest, object_id: str) -> Any:
        """The row a per-object URL names; a malformed id is a 404 too, as in Django's own
        views (``get_object`` swallows the ValidationError a bad UUID or integer raises)."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"no {self.model._meta.verbose_name} with id {object_id!r}")
        return obj

    # -- an object's page ------------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """The fieldsets, each date-time field shown by :meth:`time_display` instead of by
        Django (which shows "Nov. 22, 2026, 3:36 p.m.": to the minute, no zone)."""
        return [
            (name, {**options, "fields": [self._shown(field) for field in options["fields"]]})
            for name, options in super().get_fieldsets(request, obj)
        ]

    def _shown(self, field: Any) -> Any:
        if isinstance(field, list | tuple):  # fields on one line
            return type(field)(self._shown(item) for item in field)
        if isinstance(field, str) and isinstance(self._model_field(field), DateTimeField):
            return self.time_display(field)
        return field

    def _model_field(self, name: str) -> Any:
        try:
            return self.model._meta.get_field(name)
        except FieldDoesNotExist:  # a method of the admin
            return None

    def time_display(self, name: str) -> Callable[[Any], Any]:
        """How the date-time field ``name`` shows on an object's page: a callable that Django
        labels with the field's verbose name and marks up as ``.field-<name>``, as the field."""
        field = self.model._meta.get_field(name)

        @admin.display(description=str(field.verbose_name))
        def show(obj: Any) -> Any:
            value = getattr(obj, name)
            return self.get_empty_value_display() if value is None else display.full_time(value)

        show.__name__ = name
        return show

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> HttpResponse:
        moved = self.moved_to(request, object_id) if object_id is not None else None
        if moved is not None:
            return moved
        return super().changeform_view(request, object_id, form_url, extra_context)

    def moved_to(self, request: HttpRequest, object_id: str) -> HttpResponse | None:
        """A redirect to the page the row has moved to (see :data:`MOVES`), when it is not
        here any more and the user may see it there; ``None`` otherwise."""
        if self.model not in MOVES:
            return None
        try:
            pk = self.model._meta.pk.to_python(unquote(object_id))
        except ValidationError:
            return None
        if self.get_queryset(request).filter(pk=pk).exists():
            return None
        target, note = MOVES[self.model]
        there = self.admin_site._registry.get(target)
        if there is None or not there.has_view_permission(request):
            return None
        if not there.get_queryset(request).filter(pk=pk).exists():
            return None
        opts = target._meta
        messages.info(request, note)
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[pk])
        )

    def row_buttons(self, request: HttpRequest, obj: Any) -> list[dict[str, str]]:
        """Buttons on an object's page: ``{"url", "label", "style"}`` the user may press."""
        return []

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        context["soniq_buttons"] = self.row_buttons(request, obj) if obj is not None else []
        return super().render_change_form(request, context, add, change, form_url, obj)


def choices_filter(
    title: str, parameter: str, field: str, values: Callable[[], Iterable[str]]
) -> type[admin.SimpleListFilter]:
    """A list filter whose choices come from code (registered jobs, configured queues), not
    from a ``SELECT DISTINCT`` over the whole table on every page load. A value typed in the
    URL still filters, and shows up as a choice."""

    class ChoicesFilter(admin.SimpleListFilter):
        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            known = set(values())
            current = self.value()
            if current:
                known.add(current)
            return [(value, value) for value in sorted(known)]

        def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
            value = self.value()
            return queryset.filter(**{field: value}) if value else queryset

    ChoicesFilter.title = title
    ChoicesFilter.parameter_name = parameter
    ChoicesFilter.__name__ = f"{capfirst(parameter)}Filter"
    return ChoicesFilter


def report(request: HttpRequest, result: ActionResult, done: str, noun: tuple[str, str]) -> None:
    """One success message ("Retried 3 jobs.") and one warning grouping the refusals."""
    singular, plural = noun
    count = len(result.applied)
    if count:
        messages.success(request, f"{done} {count} {singular if count == 1 else plural}.")
    if not result.refused:
        if not count:
            messages.info(request, f"No {plural} changed.")
        return
    reasons = Counter(result.refused.values())
    lines = [
        f"{reason} ({n} {singular if n == 1 else plural})"
        for reason, n in reasons.most_common(REFUSALS_SHOWN)
    ]
    if len(reasons) > REFUSALS_SHOWN:
        lines.append(f"and {len(reasons) - REFUSALS_SHOWN} other reasons")
    left = len(result.refused)
    messages.warning(
        request,
        f"{left} {singular if left == 1 else plural} left alone: " + "; ".join(lines) + ".",
    )


def ids_of(queryset: QuerySet[Any]) -> Iterable[list[str]]:
    """The ids of ``queryset`` in batches, read with a server-side cursor where there is one,
    so that acting on a million rows never holds them all in memory."""
    batch: list[str] = []
    for value in queryset.order_by().values_list("pk", flat=True).iterator(chunk_size=BATCH_SIZE):
        batch.append(str(value))
        if len(batch) == BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class Audit:
    """How an action is recorded in Django's admin log (each object's History page): the
    verb, and the model the changed rows belong to afterwards (a requeued dead letter is a
    job again). ``deleted``: the rows are gone afterwards; they are read before."""

    message: str
    model: type[Model]
    deleted: bool = False


def act_on(
    request: HttpRequest,
    queryset: QuerySet[Any],
    action: Callable[[Sequence[str]], ActionResult],
    audit: Audit,
) -> ActionResult:
    """Run ``action`` on every row of ``queryset``, batch by batch, and log what it changed
    under the requesting user."""
    results = []
    for batch in ids_of(queryset):
        before = _rows(queryset.model, queryset.db, batch) if audit.deleted else {}
        result = action(batch)
        results.append(result)
        if audit.deleted:
            changed = [before[job_id] for job_id in result.applied if job_id in before]
        else:
            changed = list(_rows(audit.model, queryset.db, result.applied).values())
        if changed:
            flag = DELETION if audit.deleted else CHANGE
            user_id = request.user.pk
            assert user_id is not None  # the admin serves staff users only
            LogEntry.objects.log_actions(user_id, changed, flag, audit.message)
    return ActionResult.combine(results)


def _rows(model: type[Model], alias: str, ids: Sequence[str]) -> dict[str, Any]:
    """The rows with these ids, reading only what their ``__str__`` needs."""
    if not ids:
        return {}
    fields = [f.name for f in model._meta.concrete_fields if f.name in REPR_FIELDS]
    found = model._default_manager.using(alias).filter(pk__in=ids).only(*fields)
    return {str(row.pk): row for row in found}


def confirm(
    modeladmin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    title: str,
    question: str,
    button: str,
) -> TemplateResponse | None:
    """``None`` once the user confirmed; otherwise the page that shows how many rows the
    action will touch and posts the same selection back with ``post=yes``."""
    if request.POST.get("post") == "yes":
        return None
    opts: Any = modeladmin.model._meta
    count = queryset.count()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "question": question.format(count=count),
        "count": count,
        "button": button,
        "action": action,
        "opts": opts,
        "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_index": request.POST.get("index", "0"),
        # The action was posted to the change list, filters in the query string: back there.
        "back": request.get_full_path(),
        **model_breadcrumbs(
            modeladmin.admin_site,
            opts,
            reverse(f"{modeladmin.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist"),
            title,
        ),
    }
    return TemplateResponse(request, "admin/soniq/confirm_action.html", context)


def vendor(alias: str) -> str:
    return str(connections[alias].vendor)


def model_label(model: type[Model]) -> str:
    return str(model._meta.verbose_name_plural)

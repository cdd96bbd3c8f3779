"""Every list sorts only by columns an index keeps in order; ``?o=`` naming any other column is
refused before a query runs: back to the same list in its default order, with a warning."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from soniq.models import DeadLetterJob, Job, Schedule, Worker
from tests.admin.conftest import Rows, changelist, flash_levels, html

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

MODELS = {"job": Job, "deadletterjob": DeadLetterJob, "worker": Worker, "schedule": Schedule}


def _fill(rows: Rows, model: str) -> None:
    make = {
        "job": rows.job,
        "deadletterjob": rows.dead_letter,
        "worker": rows.worker,
        "schedule": rows.schedule,
    }[model]
    make()
    make()


def _indexed_columns(model: Any) -> set[str]:
    """Columns an index keeps in order: the primary key, unique fields, each index's first."""
    opts = model._meta
    columns = {opts.pk.name} | {f.name for f in opts.concrete_fields if f.unique}
    columns |= {index.fields[0].lstrip("-") for index in opts.indexes}
    return columns


@pytest.mark.parametrize("model", sorted(MODELS))
def test_only_indexed_columns_are_sortable(model: str, rows: Rows, superuser: Client) -> None:
    _fill(rows, model)
    response = superuser.get(changelist(model))
    cl = response.context["cl"]
    assert cl.sortable_by, model
    indexed = _indexed_columns(MODELS[model])
    for name in cl.sortable_by:
        assert str(cl.get_ordering_field(name)).lstrip("-") in indexed, name
    # The headers offer exactly those.
    assert html(response).count('class="sortable') == len(cl.sortable_by)
    # The default order is indexed too, but for workers: a pruned table of a few rows.
    if model != "worker":
        assert MODELS[model]._meta.ordering
        assert str(MODELS[model]._meta.ordering[0]).lstrip("-") in indexed


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_sortable_column_sorts(model: str, rows: Rows, superuser: Client) -> None:
    _fill(rows, model)
    cl = superuser.get(changelist(model)).context["cl"]
    for index, name in enumerate(cl.list_display):
        if name not in cl.sortable_by:
            continue
        for order in (str(index), f"-{index}"):
            response = superuser.get(changelist(model), {"o": order})
            assert response.status_code == 200, (name, order)
            assert response.context["cl"].get_ordering_field_columns() == {
                index: "desc" if order.startswith("-") else "asc"
            }


def _refused(client: Client, alias: str, model: str, order: str) -> None:
    table = MODELS[model]._meta.db_table
    with CaptureQueriesContext(connections[alias]) as captured:
        response = client.get(changelist(model), {"o": order, "q": "a", "p": "1"})
    assert response.status_code == 302, order
    # Same list, same search and page, no order.
    assert response["Location"] == f"{changelist(model)}?q=a&p=1", order
    assert not [q["sql"] for q in captured.captured_queries if table in q["sql"]], order
    level, message = flash_levels(response)[-1]  # earlier refusals' are not shown yet
    assert level == "warning", message
    assert "cannot be sorted by" in message and "the orders an index keeps" in message


@pytest.mark.parametrize("model", sorted(MODELS))
def test_any_other_column_is_refused(model: str, rows: Rows, superuser: Client) -> None:
    _fill(rows, model)
    cl = superuser.get(changelist(model)).context["cl"]
    others = [i for i, name in enumerate(cl.list_display) if name not in cl.sortable_by]
    assert others, model
    sortable = next(i for i, name in enumerate(cl.list_display) if name in cl.sortable_by)
    for index in others:
        _refused(superuser, rows.alias, model, str(index))
        _refused(superuser, rows.alias, model, f"-{index}")
        # Behind a sortable column, as Django's headers build a second sort key.
        _refused(superuser, rows.alias, model, f"{sortable}.{index}")
    for garbage in ("abc", "99", "1.x"):
        _refused(superuser, rows.alias, model, garbage)


def test_the_warning_names_the_column_and_the_orders_offered(rows: Rows, superuser: Client) -> None:
    rows.job()
    cl = superuser.get(changelist("job")).context["cl"]
    status = list(cl.list_display).index("status_display")
    response = superuser.get(changelist("job"), {"o": str(status)}, follow=True)
    assert response.status_code == 200
    page = html(response)
    assert "This list cannot be sorted by status: only by id or created" in page
    # Shown in its default order: newest first.
    assert response.context["cl"].get_ordering_field_columns() == cl.get_ordering_field_columns()
    assert response.context["cl"].get_ordering_field_columns() == {
        list(cl.list_display).index("created"): "desc"
    }


def test_the_dead_letter_requeue_page_refuses_an_order_too(rows: Rows, superuser: Client) -> None:
    rows.dead_letter()
    response = superuser.get(
        "/admin/soniq/deadletterjob/requeue-matching/", {"o": "3", "reason": "max_attempts"}
    )
    assert response.status_code == 302
    assert response["Location"] == changelist("deadletterjob")


def test_the_sortable_columns_are_declared_on_each_admin() -> None:
    declared = {
        model: admin.site.get_model_admin(model_class).sortable_by
        for model, model_class in MODELS.items()
    }
    assert declared == {
        "job": ("short_id", "created"),
        "deadletterjob": ("short_id", "dead_lettered"),
        "worker": ("liveness_display",),
        "schedule": ("name",),
    }

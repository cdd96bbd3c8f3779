"""The dashboard tells each user no more than the pages it links to: dead-letter figures and
the failed series only to whom may see dead letters, workers only to whom may see workers."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.admin.conftest import Rows, changelist, html

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

DASHBOARD = reverse("admin:soniq_dashboard")
JOB = "soniq.view_job"
DEAD = "soniq.view_deadletterjob"
WORKER = "soniq.view_worker"


def _fill(rows: Rows) -> None:
    now = datetime.now(UTC)
    rows.job(queue="emails")
    rows.job(queue="emails", status="done", finished_at=now - timedelta(seconds=30))
    rows.dead_letter(queue="graveyard-q", dead_lettered_at=now - timedelta(minutes=2))
    rows.worker(hostname="hidden-host-7", pid=4242, queues=["worker-only-q"])


def _dashboard(client: Client, alias: str) -> tuple[str, list[str]]:
    with CaptureQueriesContext(connections[alias]) as captured:
        response = client.get(DASHBOARD)
    assert response.status_code == 200
    return html(response), [query["sql"] for query in captured.captured_queries]


def _shows_dead_letters(page: str) -> bool:
    parts = {
        "card": 'id="summary-dead-letters"' in page,
        "column": re.search(r">\s*Dead letters\s*</th>", page) is not None,
        "queue": "graveyard-q" in page,
        "series": 'class="soniq-chart-failed"' in page,
        "link": changelist("deadletterjob") in page,
    }
    assert len(set(parts.values())) == 1, parts  # all of it or none
    return parts["card"]


def _shows_workers(page: str) -> bool:
    parts = {
        "cards": 'id="workers-online"' in page and 'id="workers-stale"' in page,
        "section": 'id="soniq-workers"' in page,
        "host": "hidden-host-7" in page and "4242" in page,
        "queues": "worker-only-q" in page,
        "link": changelist("worker") in page,
    }
    assert len(set(parts.values())) == 1, parts
    return parts["cards"]


@pytest.mark.parametrize(
    ("perms", "dead_letters", "workers"),
    [
        ((JOB,), False, False),
        ((JOB, DEAD), True, False),
        ((JOB, WORKER), False, True),
        ((JOB, DEAD, WORKER), True, True),
    ],
    ids=["jobs-only", "dead-letters", "workers", "all"],
)
def test_each_user_sees_what_their_permissions_open(
    rows: Rows,
    client_with: Callable[..., Client],
    perms: tuple[str, ...],
    dead_letters: bool,
    workers: bool,
) -> None:
    _fill(rows)
    client = client_with(*perms)
    page, queries = _dashboard(client, rows.alias)
    assert _shows_dead_letters(page) is dead_letters
    assert _shows_workers(page) is workers
    # What is not shown is not read either.
    dead_reads = [sql for sql in queries if "soniq_dead_letter_jobs" in sql]
    assert bool(dead_reads) is dead_letters
    hostname_reads = [sql for sql in queries if '"soniq_workers"."hostname"' in sql]
    assert bool(hostname_reads) is workers
    # Jobs are everyone's here: their counts and the completed series.
    assert 'data-queue="emails"' in page and 'class="soniq-chart-completed"' in page
    # The pages behind the hidden parts answer 403 to the same user.
    for model, shown in (("deadletterjob", dead_letters), ("worker", workers)):
        assert client.get(changelist(model)).status_code == (200 if shown else 403)


def test_the_charts_of_a_jobs_only_user_describe_completed_jobs_only(
    rows: Rows, client_with: Callable[..., Client]
) -> None:
    _fill(rows)
    page, _ = _dashboard(client_with(JOB), rows.alias)
    charts = page[page.index('id="soniq-charts"') :]
    charts = charts[: charts.index("</section>")]
    assert "Completed jobs</h2>" in charts
    assert "failed" not in charts.lower() and "dead letter" not in charts.lower()
    assert "jobs completed in total" in charts


def test_a_superuser_sees_everything(rows: Rows, superuser: Client) -> None:
    _fill(rows)
    page, _ = _dashboard(superuser, rows.alias)
    assert _shows_dead_letters(page) and _shows_workers(page)


def test_without_view_job_there_is_no_dashboard(
    rows: Rows, client_with: Callable[..., Client]
) -> None:
    assert client_with(DEAD, WORKER).get(DASHBOARD).status_code == 403


def test_collect_reads_nothing_of_the_parts_left_out(rows: Rows) -> None:
    from soniq.admin.dashboard import Sections, collect

    _fill(rows)
    now = datetime.now(UTC)
    with CaptureQueriesContext(connections[rows.alias]) as captured:
        data = collect(rows.alias, now, 300.0, Sections(dead_letters=False, workers=False))
    statements = [query["sql"] for query in captured.captured_queries]
    assert len(statements) == 5, statements  # nine, less two for each part left out
    assert not [sql for sql in statements if "soniq_dead_letter_jobs" in sql]
    assert data.dead_letters == {} and data.workers == [] and data.workers_online == 0
    assert sum(bucket.failed for bucket in data.per_hour) == 0

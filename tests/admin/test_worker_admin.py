"""The workers admin through Django's test client, on PostgreSQL and SQLite: which workers are
alive or stale, what each runs, in a number of queries that does not grow with the rows."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from soniq.admin.workers import RUNNING_SHOWN
from tests.admin.conftest import Rows, change, changelist, html, offered_actions

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

WORKERS = changelist("worker")
TIMEOUT = 300  # the default heartbeat timeout, in seconds


def listed(response: Any) -> dict[str, Any]:
    return {str(worker.pk): worker for worker in response.context["cl"].result_list}


def test_the_list_shows_each_workers_state(rows: Rows, superuser: Client) -> None:
    alive = rows.worker(hostname="alive-host", queues=["default", "urgent"])
    stale = rows.worker(hostname="stale-host", heartbeat_age=TIMEOUT + 60)
    stopping = rows.worker(hostname="stopping-host", status="stopping")
    stopped = rows.worker(hostname="stopped-host", status="stopped")
    dead = rows.worker(hostname="dead-host", status="dead", heartbeat_age=TIMEOUT * 10)
    response = superuser.get(WORKERS)
    assert response.status_code == 200
    assert set(listed(response)) == {str(w.pk) for w in (alive, stale, stopping, stopped, dead)}
    page = html(response)
    states = dict(
        re.findall(r'>([a-z]+-host):\d+</a>.*?soniq-status soniq-status-(\w+)"', page, re.S)
    )
    assert states == {
        "alive-host": "alive",
        "stale-host": "stale",
        "stopping-host": "alive",
        "stopped-host": "stopped",
        "dead-host": "dead",
    }
    assert f"alive-host:{alive.pid}" in page
    assert "default, urgent" in page
    assert "every queue" in page  # the others serve every queue
    assert " ago (" in page  # the last heartbeat, relative and absolute
    assert offered_actions(response) == []


def test_the_running_column_counts_and_links_the_running_jobs(
    rows: Rows, superuser: Client
) -> None:
    busy = rows.worker(hostname="busy")
    idle = rows.worker(hostname="idle")
    for _ in range(2):
        rows.running(busy)
    rows.job(status="done", worker_id=busy.id)  # finished: no longer running
    response = superuser.get(WORKERS)
    workers = listed(response)
    assert workers[str(busy.pk)].running == 2
    assert not workers[str(idle.pk)].running
    jobs = reverse("admin:soniq_job_changelist")
    [href] = re.findall(r'<td class="field-running_count"><a href="([^"]+)">2</a>', html(response))
    url = unescape(href)
    assert url.startswith(f"{jobs}?")
    # The link opens the job list filtered to those two jobs.
    filtered = superuser.get(url)
    assert filtered.status_code == 200
    assert len(filtered.context["cl"].result_list) == 2


def test_the_list_costs_the_same_queries_for_one_worker_or_many(
    rows: Rows, superuser: Client
) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connections[rows.alias]) as captured:
            assert superuser.get(WORKERS).status_code == 200
        return len(captured.captured_queries)

    worker = rows.worker()
    rows.running(worker)
    one = queries()
    for _ in range(5):
        rows.running(rows.worker())
    assert queries() == one


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "running"}, {"alive", "stale"}),
        ({"status__exact": "stopped"}, {"stopped"}),
        ({"q": "web"}, {"alive", "stopped"}),
    ],
)
def test_filters_and_search(
    rows: Rows, superuser: Client, query: dict[str, str], expected: set[str]
) -> None:
    made = {
        "alive": rows.worker(hostname="web-1"),
        "stale": rows.worker(hostname="batch-1", heartbeat_age=TIMEOUT * 2),
        "stopped": rows.worker(hostname="web-2", status="stopped"),
    }
    response = superuser.get(WORKERS, query)
    assert response.status_code == 200
    assert set(listed(response)) == {str(made[name].pk) for name in expected}


def test_a_workers_page_lists_what_it_runs(rows: Rows, superuser: Client) -> None:
    worker = rows.worker(hostname="box-5", concurrency=8, version="9.9.9")
    jobs = [rows.running(worker, task_name=f"tests.task_{n}") for n in range(3)]
    rows.job(status="done", worker_id=worker.id, task_name="tests.finished_already")
    response = superuser.get(change("worker", worker.pk))
    assert response.status_code == 200
    page = html(response)
    for text in (
        "box-5",
        str(worker.pid),
        "9.9.9",
        "every queue",
        "alive",
        "(attempt 1/4, started",
    ):
        assert text in page, text
    for job in jobs:
        assert f'<a href="{change("job", job.pk)}">{job.task_name}</a>' in page
    assert "tests.finished_already" not in page
    assert response.context["soniq_buttons"] == []


def test_a_workers_page_shows_a_bounded_list_of_running_jobs(rows: Rows, superuser: Client) -> None:
    worker = rows.worker()
    for _ in range(RUNNING_SHOWN + 2):
        rows.running(worker)
    page = html(superuser.get(change("worker", worker.pk)))
    assert page.count(", started ") == RUNNING_SHOWN


def test_an_idle_workers_page_says_so(rows: Rows, superuser: Client) -> None:
    worker = rows.worker(status="stopped")
    response = superuser.get(change("worker", worker.pk))
    assert response.status_code == 200
    assert "nothing" in html(response)
    assert "soniq-status-stopped" in html(response)

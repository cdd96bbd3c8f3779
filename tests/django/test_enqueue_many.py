"""enqueue_many: ids in input order, one statement on PostgreSQL, all-or-nothing validation."""

from __future__ import annotations

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from soniq import EnqueueError, InvalidArgumentsError
from tests.helpers import committed_job_count
from tests.jobs import JobSet

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])


def test_ids_come_back_in_input_order(jobs: JobSet) -> None:
    rows = [{"to": f"user{n}@example.com", "subject": f"#{n}"} for n in range(1234)]
    ids = jobs.app.enqueue_many_sync(jobs.send_email, rows, queue="emails", priority=50)
    assert len(ids) == len(set(ids)) == 1234
    for index in (0, 1, 617, 1233):
        info = jobs.app.get_job_sync(ids[index])
        assert info is not None
        assert info.args == rows[index]
        assert (info.queue, info.priority) == ("emails", 50)


def test_one_statement_on_postgres() -> None:
    from soniq import Soniq
    from tests.jobs import register_jobs

    jobs = register_jobs(Soniq(database="default"))
    rows = [{"to": "a", "subject": str(n)} for n in range(5000)]
    with CaptureQueriesContext(connections["default"]) as queries:
        ids = jobs.app.enqueue_many_sync(jobs.send_email, rows)
    assert len(ids) == 5000
    assert len(queries.captured_queries) == 1
    assert queries.captured_queries[0]["sql"].lstrip().startswith("WITH inserted AS")


def test_empty_list_writes_nothing(jobs: JobSet, alias: str) -> None:
    with CaptureQueriesContext(connections[alias]) as queries:
        assert jobs.app.enqueue_many_sync(jobs.send_email, []) == []
    assert queries.captured_queries == []


def test_one_bad_row_and_nothing_is_written(jobs: JobSet, alias: str) -> None:
    rows = [{"to": "a", "subject": "s"}] * 5 + [{"to": "a"}] + [{"to": "b", "subject": "s"}]
    with pytest.raises(
        InvalidArgumentsError, match=r"args_list\[5\]: 'subject' is required"
    ) as caught:
        jobs.app.enqueue_many_sync(jobs.send_email, rows)
    assert caught.value.argument == "subject"
    assert committed_job_count(alias) == 0


def test_unique_jobs_are_refused(jobs: JobSet, alias: str) -> None:
    with pytest.raises(EnqueueError, match="unique=True"):
        jobs.app.enqueue_many_sync(jobs.refresh_cache, [{"key": "a"}])
    assert committed_job_count(alias) == 0


def test_by_name_and_scheduled(jobs: JobSet) -> None:
    ids = jobs.app.enqueue_many_sync(
        "tests.send_email", [{"to": "a", "subject": "s"}], scheduled_at=3600
    )
    info = jobs.app.get_job_sync(ids[0])
    assert info is not None and info.scheduled_at is not None
    assert info.created_at is not None
    assert (info.scheduled_at - info.created_at).total_seconds() > 3500

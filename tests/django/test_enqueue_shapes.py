"""Every input shape and option of enqueue, on PostgreSQL and SQLite through Django."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connections

from soniq import InvalidJobIdError, JobStatus, TaskRef
from tests.jobs import JobSet

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])


def test_callable_shape_uses_job_defaults(jobs: JobSet) -> None:
    job_id = jobs.app.enqueue_sync(jobs.process_payment, order_id=7, amount=12.5)
    info = jobs.app.get_job_sync(job_id)
    assert info is not None
    assert info.id == job_id
    assert info.task_name == "tests.process_payment"
    assert info.status is JobStatus.QUEUED
    assert info.args == {"order_id": 7, "amount": 12.5}
    assert (info.queue, info.priority, info.max_attempts, info.attempts) == ("urgent", 10, 6, 0)
    assert info.errors == [] and info.result is None and info.dedup_key is None
    assert info.created_at is not None and info.scheduled_at is not None
    assert info.scheduled_at.tzinfo is not None


def test_string_shape_with_args(jobs: JobSet) -> None:
    job_id = jobs.app.enqueue_sync(
        "tests.send_email", args={"to": "a@b.c", "subject": "Hi", "body": "Hello"}
    )
    info = jobs.app.get_job_sync(job_id)
    assert info is not None
    assert (info.task_name, info.queue, info.priority) == ("tests.send_email", "default", 100)
    assert info.args == {"to": "a@b.c", "subject": "Hi", "body": "Hello"}


def test_unregistered_string_name_gets_system_defaults(jobs: JobSet) -> None:
    job_id = jobs.app.enqueue_sync("billing.elsewhere", args={"x": 1})
    info = jobs.app.get_job_sync(job_id)
    assert info is not None
    assert (info.queue, info.priority, info.max_attempts) == ("default", 100, 4)


def test_taskref_shape_validates_and_applies_defaults(jobs: JobSet) -> None:
    from tests.jobs import InvoiceArgs

    ref = TaskRef("billing.invoice", args_model=InvoiceArgs, queue="billing", priority=5)
    job_id = jobs.app.enqueue_sync(ref, args={"customer_id": "42", "amount": "9.5"})
    info = jobs.app.get_job_sync(job_id)
    assert info is not None
    assert info.args == {"customer_id": 42, "amount": 9.5, "note": ""}
    assert (info.task_name, info.queue, info.priority) == ("billing.invoice", "billing", 5)


def test_every_option_overrides_the_job_default(jobs: JobSet) -> None:
    run_at = datetime(2031, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    job_id = jobs.app.enqueue_sync(
        jobs.send_email,
        priority=1,
        queue="emails",
        scheduled_at=run_at,
        dedup_key="welcome-42",
        to="a@b.c",
        subject="Hi",
    )
    info = jobs.app.get_job_sync(job_id)
    assert info is not None
    assert (info.priority, info.queue, info.dedup_key) == (1, "emails", "welcome-42")
    assert info.scheduled_at == run_at
    assert info.scheduled_at.utcoffset() == timedelta(0)


def test_unique_override_per_call(jobs: JobSet) -> None:
    first = jobs.app.enqueue_sync(jobs.send_email, unique=True, to="a", subject="s")
    second = jobs.app.enqueue_sync(jobs.send_email, unique=True, to="a", subject="s")
    third = jobs.app.enqueue_sync(jobs.refresh_cache, unique=False, key="k")
    fourth = jobs.app.enqueue_sync(jobs.refresh_cache, unique=False, key="k")
    assert first == second
    assert third != fourth


def test_schedule_with_datetime_and_seconds(jobs: JobSet, alias: str) -> None:
    at = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
    absolute = jobs.app.schedule_sync(jobs.send_email, at, to="a", subject="s")
    before = datetime.now(UTC)
    relative = jobs.app.schedule_sync(
        "tests.send_email", 90, args={"to": "a", "subject": "s"}, priority=3
    )
    after = datetime.now(UTC)
    absolute_info = jobs.app.get_job_sync(absolute)
    relative_info = jobs.app.get_job_sync(relative)
    assert absolute_info is not None and relative_info is not None
    assert absolute_info.scheduled_at == at
    assert relative_info.priority == 3
    assert relative_info.scheduled_at is not None
    assert before + timedelta(seconds=90) <= relative_info.scheduled_at
    assert relative_info.scheduled_at <= after + timedelta(seconds=90)


def test_job_methods_enqueue_and_using(jobs: JobSet) -> None:
    plain = jobs.send_email.enqueue(to="a", subject="s")
    configured = jobs.send_email.using(queue="bulk", priority=500)
    tuned = configured.using(priority=7).enqueue(to="b", subject="t")
    again = configured.enqueue(to="c", subject="u")
    infos = [jobs.app.get_job_sync(i) for i in (plain, tuned, again)]
    assert [(i.queue, i.priority) for i in infos if i] == [
        ("default", 100),
        ("bulk", 7),
        ("bulk", 500),
    ]


def test_using_dedup_key_and_scheduled_at(jobs: JobSet) -> None:
    later = jobs.refresh_cache.using(dedup_key="nightly", scheduled_at=timedelta(hours=1))
    first = later.enqueue(key="a")
    second = later.enqueue(key="b")  # same dedup key: the same job, whatever the args
    info = jobs.app.get_job_sync(first)
    assert first == second
    assert info is not None and info.dedup_key == "nightly"
    assert info.scheduled_at is not None
    assert info.scheduled_at > datetime.now(UTC) + timedelta(minutes=59)


def test_job_option_names_can_be_job_arguments_through_job_enqueue(jobs: JobSet) -> None:
    job_id = jobs.flexible.enqueue(queue="not-an-option", priority="neither", args=[1])
    info = jobs.app.get_job_sync(job_id)
    assert info is not None
    assert info.queue == "default"
    assert info.args == {"queue": "not-an-option", "priority": "neither", "args": [1]}


def test_get_job_unknown_and_malformed_ids(jobs: JobSet) -> None:
    assert jobs.app.get_job_sync("00000000-0000-4000-8000-000000000000") is None
    with pytest.raises(InvalidJobIdError):
        jobs.app.get_job_sync("42")


def test_get_job_reports_dead_letters(jobs: JobSet, alias: str) -> None:
    from soniq.models import DeadLetterJob

    now = datetime.now(UTC)
    dead = DeadLetterJob.objects.using(alias).create(
        id="3f0b3c4e-8a55-4a36-9a5c-1b1e7f0f3c11",
        task_name="tests.send_email",
        args={"to": "x"},
        queue="default",
        priority=100,
        attempts=4,
        max_attempts=4,
        scheduled_at=now,
        created_at=now,
        dead_lettered_at=now,
        errors=[{"attempt": 1, "error_type": "ValueError", "message": "boom", "traceback": ""}],
        reason="max_attempts",
    )
    info = jobs.app.get_job_sync(str(dead.id))
    assert info is not None
    assert info.status is JobStatus.DEAD_LETTER
    assert info.dead_letter_reason == "max_attempts"
    assert info.last_error == dead.errors[0]
    assert info.finished_at == now


def test_orm_reads_what_soniq_wrote(jobs: JobSet, alias: str) -> None:
    from soniq.models import Job

    job_id = jobs.send_email.enqueue(to="a", subject="s")
    row = Job.objects.using(alias).get(pk=job_id)
    assert row.args == {"to": "a", "subject": "s"}
    assert row.status == "queued" and row.errors == [] and row.worker_losses == 0
    assert row.scheduled_at.tzinfo is not None
    assert connections[alias].vendor in ("postgresql", "sqlite")

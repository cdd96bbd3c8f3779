"""Operator actions (retry, cancel, requeue, delete) on Django's connection, both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from soniq.core.status import JobStatus
from soniq.models import DeadLetterJob, Job
from tests.jobs import JobSet
from tests.rows import Rows

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

LATER = datetime.now(UTC) + timedelta(hours=1)


def _dead_letter(alias: str, **fields: object) -> str:
    return str(Rows(alias).dead_letter(**fields).id)


def _processing(alias: str, jobs: JobSet, worker_status: str) -> str:
    rows = Rows(alias)
    worker = rows.worker(status=worker_status, hostname="host-a", pid=4242)
    job_id = jobs.send_email.enqueue(to="x@example.com", subject="s")
    Job.objects.using(alias).filter(id=job_id).update(
        status="processing", attempts=1, worker_id=worker.id
    )
    return job_id


def test_retry_makes_a_scheduled_job_due_now(jobs: JobSet, alias: str) -> None:
    job_id = jobs.app.schedule_sync(jobs.send_email, run_at=LATER, to="a@b.c", subject="s")
    result = jobs.app.retry_jobs_sync([job_id])
    assert result.applied == (job_id,)
    assert result.refused == {}
    job = jobs.app.get_job_sync(job_id)
    assert job is not None and job.status is JobStatus.QUEUED
    assert job.scheduled_at is not None and job.scheduled_at <= datetime.now(UTC)


def test_retry_requeues_a_dead_letter_with_its_history(jobs: JobSet, alias: str) -> None:
    job_id = _dead_letter(alias)
    result = jobs.app.retry_jobs_sync([job_id])
    assert result.applied == (job_id,)
    job = jobs.app.get_job_sync(job_id)
    assert job is not None and job.status is JobStatus.QUEUED
    assert job.attempts == 0 and job.max_attempts == 4
    assert [error["message"] for error in job.errors] == ["boom"]
    assert not DeadLetterJob.objects.using(alias).filter(id=job_id).exists()


def test_retry_refuses_a_job_running_on_a_live_worker(jobs: JobSet, alias: str) -> None:
    job_id = _processing(alias, jobs, "running")
    result = jobs.app.retry_jobs_sync([job_id])
    assert result.applied == ()
    assert "running on live worker host-a:4242" in result.refused[job_id]
    assert Job.objects.using(alias).get(id=job_id).status == "processing"


def test_retry_explains_a_job_held_by_a_dead_worker(jobs: JobSet, alias: str) -> None:
    job_id = _processing(alias, jobs, "dead")
    result = jobs.app.retry_jobs_sync([job_id])
    assert "recovery puts it back" in result.refused[job_id]


def test_retry_refuses_done_and_unknown_jobs(jobs: JobSet, alias: str) -> None:
    done = jobs.send_email.enqueue(to="x@example.com", subject="s")
    Job.objects.using(alias).filter(id=done).update(status="done")
    missing = str(uuid.uuid4())
    result = jobs.app.retry_jobs_sync([done, missing])
    assert result.applied == ()
    assert result.refused[done] == "it already finished successfully"
    assert "no such job" in result.refused[missing]


def test_cancel_only_touches_queued_jobs(jobs: JobSet, alias: str) -> None:
    queued = jobs.send_email.enqueue(to="x@example.com", subject="s")
    running = _processing(alias, jobs, "running")
    result = jobs.app.cancel_jobs_sync([queued, running])
    assert result.applied == (queued,)
    assert "already running" in result.refused[running]
    cancelled = Job.objects.using(alias).get(id=queued)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    # A cancelled job can be retried: back to the queue.
    assert jobs.app.retry_jobs_sync([queued]).applied == (queued,)
    assert Job.objects.using(alias).get(id=queued).status == "queued"


def test_requeue_skips_a_dead_letter_whose_dedup_key_is_taken(jobs: JobSet, alias: str) -> None:
    live = jobs.refresh_cache.enqueue(key="k")
    holder = Job.objects.using(alias).get(id=live)
    dead = _dead_letter(alias, task_name=holder.task_name, dedup_key=holder.dedup_key)
    result = jobs.app.requeue_dead_letters_sync([dead])
    assert result.applied == ()
    assert "dedup key" in result.refused[dead]
    assert DeadLetterJob.objects.using(alias).filter(id=dead).exists()
    # Once the live job is done, the key is free and the dead letter moves.
    Job.objects.using(alias).filter(id=live).update(status="done")
    assert jobs.app.requeue_dead_letters_sync([dead]).applied == (dead,)


def test_requeue_and_delete_in_batches(jobs: JobSet, alias: str) -> None:
    ids = [_dead_letter(alias) for _ in range(5)]
    result = jobs.app.requeue_dead_letters_sync(ids[:3])
    assert sorted(result.applied) == sorted(ids[:3])
    assert Job.objects.using(alias).filter(id__in=ids[:3], status="queued").count() == 3
    deleted = jobs.app.delete_dead_letters_sync([*ids[3:], ids[0]])
    assert sorted(deleted.applied) == sorted(ids[3:])
    assert "not a dead letter" in deleted.refused[ids[0]]
    assert DeadLetterJob.objects.using(alias).count() == 0


def test_an_action_inside_a_rolled_back_transaction_changes_nothing(
    jobs: JobSet, alias: str
) -> None:
    dead = _dead_letter(alias)

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic(using=alias):
        assert jobs.app.requeue_dead_letters_sync([dead]).applied == (dead,)
        raise Rollback
    assert DeadLetterJob.objects.using(alias).filter(id=dead).exists()
    assert not Job.objects.using(alias).filter(id=dead).exists()

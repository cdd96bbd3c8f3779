"""Enqueue and inspect: the same calls give the same stored jobs on every backend."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from soniq import InvalidConnectionError, JobInfo, JobStatus, Soniq, TaskRef
from tests.conformance.conftest import CONFORMANCE, backend_name, lacks, requires
from tests.helpers import conninfo
from tests.jobs import InvoiceArgs, register_jobs

pytestmark = [CONFORMANCE, pytest.mark.asyncio]


async def stored(app: Soniq, job_id: str) -> JobInfo:
    info = await app.get_job(job_id)
    assert info is not None, f"{backend_name(app)}: job {job_id} not found"
    return info


async def test_the_three_input_shapes_store_queued_jobs(app: Soniq) -> None:
    jobs = register_jobs(app)

    by_callable = await app.enqueue(jobs.process_payment, order_id=7, amount=12.5)
    by_name = await app.enqueue("tests.send_email", args={"to": "a@example.com", "subject": "Hi"})
    ref = TaskRef("billing.invoice", args_model=InvoiceArgs, queue="billing", priority=7)
    by_ref = await app.enqueue(ref, args={"customer_id": 3, "amount": 9})

    assert len({by_callable, by_name, by_ref}) == 3
    for job_id in (by_callable, by_name, by_ref):
        assert str(uuid.UUID(job_id)) == job_id, "ids are canonical UUID text"

    info = await stored(app, by_callable)
    assert (info.id, info.task_name, info.status) == (
        by_callable,
        "tests.process_payment",
        JobStatus.QUEUED,
    )
    assert info.args == {"order_id": 7, "amount": 12.5}
    assert (info.queue, info.priority, info.max_attempts) == ("urgent", 10, 6)
    assert info.attempts == 0 and info.errors == [] and info.result is None
    assert info.worker_id is None and info.started_at is None and info.finished_at is None
    assert info.scheduled_at is not None and info.created_at is not None

    info = await stored(app, by_name)
    assert (info.task_name, info.status) == ("tests.send_email", JobStatus.QUEUED)
    assert info.args == {"to": "a@example.com", "subject": "Hi"}
    assert (info.queue, info.priority, info.max_attempts) == ("default", 100, 4)

    info = await stored(app, by_ref)
    assert (info.task_name, info.status) == ("billing.invoice", JobStatus.QUEUED)
    # What is stored is the model's JSON dump: coerced, with defaults filled in.
    assert info.args == {"customer_id": 3, "amount": 9.0, "note": ""}
    assert (info.queue, info.priority, info.max_attempts) == ("billing", 7, 4)


async def test_per_call_options_override_the_job_defaults(app: Soniq) -> None:
    jobs = register_jobs(app)
    job_id = await app.enqueue(
        jobs.process_payment, order_id=1, amount=1.0, queue="slow", priority=900
    )
    info = await stored(app, job_id)
    assert (info.queue, info.priority, info.max_attempts) == ("slow", 900, 6)


async def test_enqueue_many_returns_ids_in_input_order(app: Soniq) -> None:
    jobs = register_jobs(app)
    rows = [{"to": f"user{n}@example.com", "subject": f"#{n}"} for n in range(25)]
    ids = await app.enqueue_many(jobs.send_email, rows, queue="bulk", priority=3)
    assert len(ids) == len(set(ids)) == 25
    for job_id, args in zip(ids, rows, strict=True):
        info = await stored(app, job_id)
        assert info.args == args
        assert (info.status, info.queue, info.priority) == (JobStatus.QUEUED, "bulk", 3)
    assert await app.enqueue_many(jobs.send_email, []) == []


async def test_schedule_with_seconds_and_with_an_aware_datetime(app: Soniq) -> None:
    register_jobs(app)
    args = {"to": "a@example.com", "subject": "later"}

    before = datetime.now(UTC)
    in_an_hour = await app.schedule("tests.send_email", 3600, args=args)
    after = datetime.now(UTC)
    info = await stored(app, in_an_hour)
    assert info.status is JobStatus.QUEUED
    assert info.scheduled_at is not None
    assert before + timedelta(hours=1) <= info.scheduled_at <= after + timedelta(hours=1)

    # Not UTC, with microseconds: stored as the same instant, reported in UTC.
    kolkata = timezone(timedelta(hours=5, minutes=30))
    run_at = (datetime.now(kolkata) + timedelta(days=2)).replace(microsecond=123456)
    on_date = await app.schedule("tests.send_email", run_at, args=args)
    info = await stored(app, on_date)
    assert info.scheduled_at == run_at
    assert info.scheduled_at is not None and info.scheduled_at.utcoffset() == timedelta(0)

    # A job enqueued now is due now: scheduled no later than this moment.
    now_id = await app.enqueue("tests.send_email", args=args)
    info = await stored(app, now_id)
    assert info.scheduled_at is not None and info.scheduled_at <= datetime.now(UTC)


async def test_unique_returns_the_live_job_until_it_has_run(app: Soniq) -> None:
    jobs = register_jobs(app)

    first = await app.enqueue(jobs.send_email, to="a@example.com", subject="s", unique=True)
    again = await app.enqueue(jobs.send_email, to="a@example.com", subject="s", unique=True)
    other = await app.enqueue(jobs.send_email, to="b@example.com", subject="s", unique=True)
    assert again == first
    assert other != first
    # Declared unique=True on the job (refresh_cache): the same, without the option.
    cached = await app.enqueue(jobs.refresh_cache, key="k")
    assert await app.enqueue(jobs.refresh_cache, key="k") == cached

    assert await app.run_worker(run_once=True, queues=["default"]) is True
    assert (await stored(app, first)).status is JobStatus.DONE
    fresh = await app.enqueue(jobs.send_email, to="a@example.com", subject="s", unique=True)
    assert fresh not in (first, other)
    assert (await stored(app, fresh)).status is JobStatus.QUEUED


async def test_dedup_key_returns_the_live_job_per_task_name(app: Soniq) -> None:
    register_jobs(app)
    first = await app.enqueue("tests.flexible", args={"n": 1}, dedup_key="nightly")
    # Different arguments, same key: still the first job.
    assert await app.enqueue("tests.flexible", args={"n": 2}, dedup_key="nightly") == first
    info = await stored(app, first)
    assert info.args == {"n": 1}
    assert info.dedup_key == "nightly"
    # The key belongs to one task name.
    elsewhere = await app.enqueue(
        "tests.send_email", args={"to": "x@example.com", "subject": "s"}, dedup_key="nightly"
    )
    assert elsewhere != first
    assert await app.enqueue("tests.flexible", args={"n": 3}, dedup_key="other") != first


async def test_get_job_of_an_unknown_id_is_none(app: Soniq) -> None:
    assert await app.get_job(uuid.uuid4()) is None
    assert await app.get_job(str(uuid.uuid4())) is None


async def test_a_foreign_connection_joins_the_callers_transaction(app: Soniq) -> None:
    requires(app, "supports_transactional_enqueue")
    register_jobs(app)
    args = {"to": "a@example.com", "subject": "tx"}
    async with await psycopg.AsyncConnection.connect(conninfo()) as connection:
        async with connection.transaction():
            committed = await app.enqueue("tests.send_email", args=args, connection=connection)
            # Not visible to the app's own connections before the caller commits.
            assert await app.get_job(committed) is None
        assert (await stored(app, committed)).status is JobStatus.QUEUED

        rolled_back: list[str] = []
        async with connection.transaction():
            rolled_back += await app.enqueue_many(
                "tests.send_email", [args, args], connection=connection
            )
            raise psycopg.Rollback()
        assert len(rolled_back) == 2
        for job_id in rolled_back:
            assert await app.get_job(job_id) is None


async def test_a_foreign_connection_is_refused_without_transactional_enqueue(app: Soniq) -> None:
    lacks(
        app,
        "supports_transactional_enqueue",
        "connection= is accepted there (see the transaction test)",
    )
    register_jobs(app)
    args = {"to": "a@example.com", "subject": "tx"}
    async with await psycopg.AsyncConnection.connect(conninfo()) as connection:
        with pytest.raises(InvalidConnectionError):
            await app.enqueue("tests.send_email", args=args, connection=connection)
        with pytest.raises(InvalidConnectionError):
            await app.enqueue_many("tests.send_email", [args], connection=connection)
    # Without it, the same enqueue works.
    job_id = await app.enqueue("tests.send_email", args=args)
    assert (await stored(app, job_id)).status is JobStatus.QUEUED

"""Two claims that disagree about which job of a lock is first: one takes the first job, not
yet committed, while a more urgent job of the same lock commits; the other claim's snapshot
sees that job first, with nothing of its lock running. The unique index on running jobs per
lock makes the second claim wait, fail and claim again: one job of the lock runs."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from soniq.backends.postgres.backend import PostgresBackend
from soniq.backends.postgres.worker_statements import claim_jobs
from tests.helpers import conninfo, query_elsewhere, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

JOB = """
INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts, max_attempts,
    scheduled_at, created_at, errors, worker_losses, lock, lock_order)
VALUES (%s, 'tests.locked', '{}', 'default', %s, 'queued', 0, 1, now(), now(), '[]', 0,
        'customer:1', nextval('soniq_jobs_lock_order'))
"""


def _claim_waits_on_a_lock() -> bool:
    rows = query_elsewhere(
        "default",
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND application_name = 'soniq'",
    )
    return bool(rows[0][0])


async def test_a_claim_that_sees_another_job_of_a_lock_first_does_not_run_it_beside() -> None:
    first, urgent = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(conninfo(), autocommit=True) as setup:
        setup.execute(JOB, (first, 100))
    backend = PostgresBackend(conninfo())
    try:
        with psycopg.connect(conninfo()) as claimer:
            # Worker A's claim takes the first job of the lock, not committed yet.
            statement = claim_jobs(
                worker_id=str(uuid.uuid4()), task_names=["tests.locked"], queues=None, limit=5
            )
            taken = claimer.execute(statement.sql, statement.params).fetchall()
            assert [str(row[0]) for row in taken] == [first]
            # A more urgent job of the lock commits: worker B's snapshot sees it first of the
            # lock, and the first job still queued.
            with psycopg.connect(conninfo(), autocommit=True) as enqueuer:
                enqueuer.execute(JOB, (urgent, 1))
            other = asyncio.ensure_future(
                backend.claim_jobs(str(uuid.uuid4()), ["tests.locked"], None, 5)
            )
            await asyncio.to_thread(wait_until, _claim_waits_on_a_lock, 10)
            assert not other.done()
            claimer.commit()
        claimed = await asyncio.wait_for(other, 10)
    finally:
        await backend.close()
    assert claimed == [], "the lock's job runs on A: B takes nothing of that lock"
    running = query_elsewhere(
        "default", "SELECT id FROM soniq_jobs WHERE lock = 'customer:1' AND status = 'processing'"
    )
    assert [str(row[0]) for row in running] == [first]


async def test_a_limited_claim_leaves_limits_another_claim_holds_and_tries_again() -> None:
    from soniq.backends.postgres.limit_statements import LIMIT_LOCK_NAMESPACE
    from soniq.core.limits import ClaimLimits, Limit, task_key

    job_id = str(uuid.uuid4())
    with psycopg.connect(conninfo(), autocommit=True) as setup:
        setup.execute(
            "INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts, "
            "max_attempts, scheduled_at, created_at, errors, worker_losses) VALUES (%s, "
            "'tests.capped', '{}', 'default', 100, 'queued', 0, 1, now(), now(), '[]', 0)",
            (job_id,),
        )
    limits = ClaimLimits.build(["tests.capped"], {"tests.capped": Limit(concurrency=1)}, {})
    backend = PostgresBackend(conninfo())
    try:
        with psycopg.connect(conninfo()) as other:
            # Another worker's limited claim, in its transaction, holds the task's limit.
            other.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                (LIMIT_LOCK_NAMESPACE, task_key("tests.capped")),
            )
            busy = await backend.claim_limited_jobs(str(uuid.uuid4()), limits, 5)
            assert (busy.jobs, busy.busy) == ([], True), "left to the other claim, not waited for"
            other.commit()
        taken = await backend.claim_limited_jobs(str(uuid.uuid4()), limits, 5)
    finally:
        await backend.close()
    assert [job.id for job in taken.jobs] == [job_id] and not taken.busy

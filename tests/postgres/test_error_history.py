"""The error history's cap in PostgreSQL's statements: a lowered limit cuts a longer history
at the next append (a retry, a dead-lettering) and counts every entry it drops, and a row
inserted without ``errors_dropped`` (by code older than the column) reads 0."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
import pytest_asyncio

from soniq import JobStatus
from soniq.backends.postgres import PostgresBackend
from soniq.core.settings import SoniqSettings
from tests.helpers import conninfo
from tests.history_helpers import entry, new_job, register

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

TASK = "pg.history"


@pytest_asyncio.fixture
async def backends() -> AsyncIterator[dict[int, PostgresBackend]]:
    """Two backends on the test database: one keeping 5 entries, one keeping 2."""
    made = {
        limit: PostgresBackend(conninfo(), settings=SoniqSettings(error_history_limit=limit))
        for limit in (5, 2)
    }
    yield made
    for backend in made.values():
        await backend.close()


async def _claim(backend: PostgresBackend, worker: str, job_id: str, attempt: int) -> None:
    [claimed] = await backend.claim_jobs(worker, [TASK], None, 1)
    assert (claimed.id, claimed.attempt) == (job_id, attempt)


async def _fail_five_times(backend: PostgresBackend) -> tuple[str, str]:
    [job_id] = await backend.insert_jobs([new_job(TASK)])
    worker = await register(backend, TASK)
    for attempt in range(1, 6):
        await _claim(backend, worker, job_id, attempt)
        assert await backend.retry_job(worker, job_id, attempt, 0, entry(attempt))
    info = await backend.get_job(job_id)
    assert info is not None and (len(info.errors), info.errors_dropped) == (5, 0)
    return job_id, worker


async def test_a_lowered_limit_cuts_the_history_at_the_next_retry(
    backends: dict[int, PostgresBackend],
) -> None:
    job_id, worker = await _fail_five_times(backends[5])
    tight = backends[2]
    await _claim(tight, worker, job_id, 6)
    assert await tight.retry_job(worker, job_id, 6, 0, entry(6))
    info = await tight.get_job(job_id)
    assert info is not None
    assert [entry["attempt"] for entry in info.errors] == [5, 6]
    assert info.errors_dropped == 4


async def test_a_lowered_limit_cuts_the_history_as_the_job_is_dead_lettered(
    backends: dict[int, PostgresBackend],
) -> None:
    job_id, worker = await _fail_five_times(backends[5])
    tight = backends[2]
    await _claim(tight, worker, job_id, 6)
    assert await tight.dead_letter_job(worker, job_id, 6, entry(6), "max_attempts")
    info = await tight.get_job(job_id)
    assert info is not None and info.status is JobStatus.DEAD_LETTER
    assert [entry["attempt"] for entry in info.errors] == [5, 6]
    assert info.errors_dropped == 4


async def test_a_row_inserted_without_the_column_has_dropped_nothing(
    backends: dict[int, PostgresBackend],
) -> None:
    job_id = uuid.uuid4()
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        # The INSERT of code that predates errors_dropped: the database default fills it in.
        conn.execute(
            "INSERT INTO soniq_dead_letter_jobs (id, task_name, args, queue, priority, "
            "attempts, max_attempts, scheduled_at, created_at, dead_lettered_at, errors, "
            "reason) VALUES (%s, %s, '{}', 'default', 100, 4, 4, now(), now(), now(), "
            "'[]', 'max_attempts')",
            (job_id, TASK),
        )
    info = await backends[5].get_job(str(job_id))
    assert info is not None and info.errors_dropped == 0

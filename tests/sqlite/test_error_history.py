"""The error history's cap in SQLite's statements: the entries kept stay JSON objects (not
text), a lowered limit cuts a longer history at the next append and counts every entry it
drops, and a row inserted without ``errors_dropped`` (by code older than the column) reads 0."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import closing

import pytest
import pytest_asyncio
from django.db import connections

from soniq.backends.sqlite import SQLiteBackend
from soniq.core.settings import SoniqSettings
from tests.history_helpers import entry, new_job, register

pytestmark = [pytest.mark.django_db(databases=["sqlite"], transaction=True), pytest.mark.asyncio]

TASK = "sqlite.history"


def _path() -> str:
    return str(connections["sqlite"].settings_dict["NAME"])


def _query(sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(_path(), isolation_level=None)) as conn:
        return conn.execute(sql, params).fetchall()


@pytest_asyncio.fixture
async def backends() -> AsyncIterator[dict[int, SQLiteBackend]]:
    """Two backends on the test database: one keeping 5 entries, one keeping 2."""
    made = {
        limit: SQLiteBackend(_path(), settings=SoniqSettings(error_history_limit=limit))
        for limit in (5, 2)
    }
    yield made
    for backend in made.values():
        await backend.close()


async def _fail(backend: SQLiteBackend, worker: str, job_id: str, attempt: int) -> None:
    [claimed] = await backend.claim_jobs(worker, [TASK], None, 1)
    assert (claimed.id, claimed.attempt) == (job_id, attempt)
    assert await backend.retry_job(worker, job_id, attempt, 0, entry(attempt))


async def test_a_lowered_limit_cuts_the_history_and_keeps_objects(
    backends: dict[int, SQLiteBackend],
) -> None:
    roomy, tight = backends[5], backends[2]
    [job_id] = await roomy.insert_jobs([new_job(TASK)])
    worker = await register(roomy, TASK)
    for attempt in range(1, 6):
        await _fail(roomy, worker, job_id, attempt)
    info = await roomy.get_job(job_id)
    assert info is not None and (len(info.errors), info.errors_dropped) == (5, 0)

    await _fail(tight, worker, job_id, 6)
    info = await tight.get_job(job_id)
    assert info is not None
    assert [entry["attempt"] for entry in info.errors] == [5, 6]
    assert info.errors_dropped == 4
    [(types,)] = _query(
        "SELECT json_group_array(entry.type) FROM soniq_jobs AS job, json_each(job.errors) "
        "AS entry WHERE job.id = ?",
        (uuid.UUID(job_id).hex,),
    )
    assert json.loads(str(types)) == ["object", "object"], "entries, not text"


async def test_a_row_inserted_without_the_column_has_dropped_nothing(
    backends: dict[int, SQLiteBackend],
) -> None:
    job_id = uuid.uuid4()
    # The INSERT of code that predates errors_dropped: the database default fills it in.
    _query(
        "INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts, "
        "max_attempts, scheduled_at, created_at, errors, dedup_key, worker_losses) VALUES "
        "(?, ?, '{}', 'default', 100, 'queued', 0, 4, '2030-01-01 00:00:00.000000', "
        "'2030-01-01 00:00:00.000000', '[]', NULL, 0)",
        (job_id.hex, TASK),
    )
    info = await backends[5].get_job(str(job_id))
    assert info is not None and info.errors_dropped == 0

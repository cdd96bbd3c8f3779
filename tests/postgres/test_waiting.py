"""Waiting for jobs on PostgreSQL: async waiters share one listening connection, announced
ends wake them at once, and the connections close after the last waiter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
import pytest_asyncio

from soniq import JobCancelledError, Soniq, waiting
from tests.helpers import bounded, conninfo, eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

WAITERS = 40


@pytest_asyncio.fixture
async def app() -> AsyncIterator[Soniq]:
    application = Soniq(database_url=conninfo())

    @application.job(name="wait.never_run")
    def never_run() -> None:
        raise AssertionError("no worker runs here")

    yield application
    await application.close()


async def _waiting_connections() -> int:
    """Sessions of soniq's waiters on this test database (no other database is counted)."""
    async with await psycopg.AsyncConnection.connect(conninfo(), autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'soniq-wait'"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _awaited(count: int) -> bool:
    async with await psycopg.AsyncConnection.connect(conninfo(), autocommit=True) as conn:
        cursor = await conn.execute("SELECT count(*) FROM soniq_jobs WHERE awaited")
        row = await cursor.fetchone()
    return row is not None and row[0] == count


async def test_many_async_waiters_share_two_connections(app: Soniq) -> None:
    ids = await app.enqueue_many("wait.never_run", [{} for _ in range(WAITERS)])
    waiters = [asyncio.create_task(app.wait_for(job_id, timeout=30)) for job_id in ids]
    await eventually(lambda: _awaited(WAITERS))
    assert await _waiting_connections() == 2  # one listening, one marking jobs awaited
    began = time.monotonic()
    result = await app.cancel_jobs(ids)
    assert len(result.applied) == WAITERS
    outcomes = await bounded(asyncio.gather(*waiters, return_exceptions=True))
    # Woken by the announcements, not by the reads every 5 seconds.
    assert time.monotonic() - began < 4
    assert all(isinstance(outcome, JobCancelledError) for outcome in outcomes), outcomes
    await eventually(lambda: _no_waiting_connection())


async def _no_waiting_connection() -> bool:
    return await _waiting_connections() == 0


async def test_a_timed_out_waiter_leaves_the_others_listening(app: Soniq) -> None:
    slow, quick = await app.enqueue_many("wait.never_run", [{}, {}])
    patient = asyncio.create_task(app.wait_for(slow, timeout=30))
    with pytest.raises(TimeoutError):
        await app.wait_for(quick, timeout=0.2)
    await eventually(lambda: _awaited(2))
    await app.cancel_jobs([slow])
    with pytest.raises(JobCancelledError):
        await bounded(patient, 4)
    await eventually(lambda: _no_waiting_connection())


async def test_a_cancelled_waiter_leaves_nothing_behind(app: Soniq) -> None:
    first, second = await app.enqueue_many("wait.never_run", [{}, {}])
    leaving = asyncio.create_task(app.wait_for(first, timeout=30))
    staying = asyncio.create_task(app.wait_for(second, timeout=30))
    await eventually(lambda: _awaited(2))
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    assert leaving.cancelled()
    assert await _waiting_connections() == 2  # the other waiter still listens
    await app.cancel_jobs([second])
    with pytest.raises(JobCancelledError):
        await bounded(staying, 4)
    await eventually(lambda: _no_waiting_connection())
    assert waiting._hubs == {}  # the idle hub was forgotten, and its loop with it

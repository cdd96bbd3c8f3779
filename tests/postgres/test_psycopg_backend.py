"""Soniq(database_url=...) on psycopg 3: the async and sync API outside Django's connection."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import psycopg
import pytest
import pytest_asyncio

from soniq import ArgumentsNotSerializableError, JobStatus, Soniq
from soniq.backends.postgres import PostgresBackend
from tests.helpers import committed_job_count, conninfo
from tests.jobs import JobSet, register_jobs

pytestmark = [pytest.mark.django_db(transaction=True)]


class CountingCursor(psycopg.AsyncCursor[Any]):
    """Counts the statements sent, to prove enqueue_many is one round trip."""

    executed: ClassVar[list[str]] = []

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        CountingCursor.executed.append(str(query))
        return await super().execute(query, params, **kwargs)


@pytest_asyncio.fixture
async def pg_jobs() -> AsyncIterator[JobSet]:
    app = Soniq(database_url=conninfo())
    yield register_jobs(app)
    await app.close()


@pytest.mark.asyncio
async def test_the_backend_is_psycopg(pg_jobs: JobSet) -> None:
    assert isinstance(pg_jobs.app.backend, PostgresBackend)
    assert pg_jobs.app.backend.supports_listen
    assert pg_jobs.app.backend.supports_transactional_enqueue


@pytest.mark.asyncio
async def test_enqueue_shapes_and_get_job(pg_jobs: JobSet) -> None:
    app = pg_jobs.app
    by_callable = await app.enqueue(pg_jobs.process_payment, order_id=1, amount=2.5)
    by_name = await app.enqueue("tests.send_email", args={"to": "a", "subject": "s"}, priority=7)
    scheduled = await app.schedule(pg_jobs.send_email, 30, to="b", subject="s")
    info = await app.get_job(by_callable)
    assert info is not None and info.status is JobStatus.QUEUED
    assert (info.queue, info.priority, info.max_attempts) == ("urgent", 10, 6)
    named = await app.get_job(by_name)
    assert named is not None and named.priority == 7
    later = await app.get_job(scheduled)
    assert later is not None and later.scheduled_at and later.created_at
    assert (later.scheduled_at - later.created_at).total_seconds() > 25
    assert committed_job_count("default") == 3


async def _stored_args(ids: list[str]) -> list[Any]:
    async with await psycopg.AsyncConnection.connect(conninfo()) as conn:
        cursor = await conn.execute(
            "SELECT id::text, args FROM soniq_jobs WHERE id = ANY(%s::uuid[])", (ids,)
        )
        stored = dict(await cursor.fetchall())
    return [stored.get(job_id) for job_id in ids]


async def _enqueue_counted(jobs: JobSet, rows: list[dict[str, Any]]) -> tuple[list[str], int]:
    """``enqueue_many`` on a connection of its own; the ids, and how many statements it sent."""
    CountingCursor.executed = []
    async with await psycopg.AsyncConnection.connect(
        conninfo(), cursor_factory=CountingCursor
    ) as conn:
        ids = await jobs.app.enqueue_many(jobs.send_email, rows, connection=conn)
    return ids, len(CountingCursor.executed)


@pytest.mark.asyncio
async def test_enqueue_many_is_one_statement_with_ids_in_order(pg_jobs: JobSet) -> None:
    # Text that needs quoting or escaping in an array or JSON literal, in every row.
    rows = [{"to": f'u{n} "é,}}\\', "subject": "s" * (n % 7)} for n in range(2000)]
    ids, statements = await _enqueue_counted(pg_jobs, rows)
    assert statements == 1
    assert len(ids) == 2000
    # Every id stored with its own row's arguments.
    assert await _stored_args(ids) == rows


# Over twice soniq.app.ENQUEUE_BATCH: written a batch at a time, each while the next is built.
MANY = 10_001


@pytest.mark.asyncio
async def test_a_large_enqueue_many_is_written_in_batches_in_order(pg_jobs: JobSet) -> None:
    rows = [{"to": f"u{n}", "subject": "é" * (n % 3)} for n in range(MANY)]
    ids, statements = await _enqueue_counted(pg_jobs, rows)
    # One statement per batch of 2,000 (the last one partial), and nothing else.
    assert statements == 6
    assert len(ids) == len(set(ids)) == MANY
    assert await _stored_args(ids) == rows
    assert committed_job_count("default") == MANY


@pytest.mark.asyncio
async def test_a_bad_row_late_in_a_large_enqueue_many_writes_nothing(pg_jobs: JobSet) -> None:
    rows: list[dict[str, Any]] = [{"to": f"u{n}", "subject": "s"} for n in range(MANY)]
    rows[-1] = {"to": {"a", "set"}, "subject": "s"}
    with pytest.raises(ArgumentsNotSerializableError, match=rf"args_list\[{MANY - 1}\]"):
        await pg_jobs.app.enqueue_many(pg_jobs.send_email, rows)
    assert committed_job_count("default") == 0
    # In the caller's transaction: the batches already sent are undone, the caller's own
    # work and connection are not.
    async with await psycopg.AsyncConnection.connect(conninfo()) as conn, conn.transaction():
        kept = await pg_jobs.app.enqueue(pg_jobs.send_email, to="x", subject="s", connection=conn)
        with pytest.raises(ArgumentsNotSerializableError):
            await pg_jobs.app.enqueue_many(pg_jobs.send_email, rows, connection=conn)
        good = await pg_jobs.app.enqueue_many(pg_jobs.send_email, rows[:-1], connection=conn)
    assert committed_job_count("default") == 1 + MANY - 1
    assert await _stored_args([kept, *good]) == [{"to": "x", "subject": "s"}, *rows[:-1]]


@pytest.mark.asyncio
async def test_a_large_enqueue_many_rolls_back_with_the_callers_transaction(
    pg_jobs: JobSet,
) -> None:
    rows = [{"to": f"u{n}", "subject": "s"} for n in range(MANY)]
    async with await psycopg.AsyncConnection.connect(conninfo()) as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await pg_jobs.app.enqueue_many(pg_jobs.send_email, rows, connection=conn)
                raise RuntimeError("roll back")
    assert committed_job_count("default") == 0


@pytest.mark.asyncio
async def test_transactional_enqueue_on_an_async_connection(pg_jobs: JobSet) -> None:
    await pg_jobs.app.ensure_initialized()
    backend = pg_jobs.app.backend
    assert isinstance(backend, PostgresBackend)
    async with backend.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await pg_jobs.app.enqueue(pg_jobs.send_email, connection=conn, to="a", subject="s")
                raise RuntimeError("roll back")
        async with conn.transaction():
            kept = await pg_jobs.send_email.using(connection=conn).aenqueue(to="b", subject="s")
            assert committed_job_count("default") == 0
    assert committed_job_count("default") == 1
    info = await pg_jobs.app.get_job(kept)
    assert info is not None and info.args["to"] == "b"


def test_sync_api_with_and_without_a_connection() -> None:
    app = Soniq(database_url=conninfo())
    jobs = register_jobs(app)
    try:
        pooled = app.enqueue_sync(jobs.send_email, to="a", subject="s")
        with psycopg.connect(conninfo()) as conn:
            in_tx = app.enqueue_sync(jobs.send_email, connection=conn, to="b", subject="s")
            assert committed_job_count("default", "id = %s", (in_tx,)) == 0
            conn.rollback()
        info = app.get_job_sync(pooled)
        assert info is not None and info.args == {"to": "a", "subject": "s"}
        assert app.get_job_sync(in_tx) is None
    finally:
        assert isinstance(app.backend, PostgresBackend)
        app.backend.close_sync()


@pytest.mark.asyncio
async def test_wrong_kind_of_connection_is_refused(pg_jobs: JobSet) -> None:
    async with await psycopg.AsyncConnection.connect(conninfo()) as aconn:
        with pytest.raises(TypeError, match="psycopg Connection"):
            pg_jobs.app.enqueue_sync(pg_jobs.send_email, connection=aconn, to="a", subject="s")
    with psycopg.connect(conninfo()) as conn, pytest.raises(TypeError, match="AsyncConnection"):
        await pg_jobs.app.enqueue(pg_jobs.send_email, connection=conn, to="a", subject="s")
    assert committed_job_count("default") == 0


@pytest.mark.asyncio
async def test_eight_concurrent_async_enqueuers_get_one_job(pg_jobs: JobSet) -> None:
    connections = [await psycopg.AsyncConnection.connect(conninfo()) for _ in range(8)]
    start = asyncio.Event()

    async def enqueue(conn: psycopg.AsyncConnection[Any]) -> str:
        await start.wait()
        async with conn.transaction():
            return str(await pg_jobs.refresh_cache.using(connection=conn).aenqueue(key="hot"))

    tasks = [asyncio.create_task(enqueue(conn)) for conn in connections]
    start.set()
    ids = await asyncio.gather(*tasks)
    for conn in connections:
        await conn.close()
    assert len(set(ids)) == 1
    assert committed_job_count("default") == 1


def test_plain_asyncio_program_without_django() -> None:
    """A script that never imports Django enqueues and reads back a job."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from soniq import Soniq

        app = Soniq(database_url=sys.argv[1])

        @app.job(name="standalone.add")
        async def add(a: int, b: int) -> int:
            return a + b

        async def main():
            job_id = await app.enqueue(add, a=1, b=2)
            info = await app.get_job(job_id)
            await app.close()
            assert "django" not in sys.modules, "soniq imported Django"
            print(info.task_name, info.args["a"], info.args["b"], info.status.value)

        asyncio.run(main())
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", script, conninfo()],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["standalone.add", "1", "2", "queued"]

"""Fixtures for in-process worker tests: a fast app, workers that are always closed, and
polling with deadlines for the asynchronous outcomes.

Workers use the pool sizes soniq gives them. Every run is bounded (``bounded``), so a hang
fails its test instead of stalling the suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
import pytest_asyncio

from soniq import Soniq
from soniq.worker import Worker
from tests.helpers import bounded, conninfo, eventually, query_elsewhere

T = TypeVar("T")

# Short intervals so that every loop of the worker turns quickly in tests.
FAST: dict[str, Any] = {
    "poll_interval": 0.2,
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 30,
    "shutdown_timeout": 2,
    "error_retry_delay": 0.1,
}


# Soniq.worker_backend as shipped, for the tests that need the real pool sizes.
real_worker_backend = Soniq.worker_backend

# A bound on every worker run a test awaits, so that a hang fails the test instead of the suite.
RUN_DEADLINE = 20.0


def make_app(**overrides: Any) -> Soniq:
    return Soniq(database_url=conninfo(), **{**FAST, **overrides})


@pytest_asyncio.fixture
async def app() -> AsyncIterator[Soniq]:
    application = make_app()
    yield application
    await application.close()


async def rows(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Committed data, read on a connection of its own (off the event loop)."""
    return await asyncio.to_thread(query_elsewhere, "default", sql, params)


def _execute(sql: str, params: tuple[Any, ...]) -> int:
    with psycopg.connect(conninfo(), autocommit=True) as connection:
        return connection.execute(sql, params).rowcount


async def execute(sql: str, params: tuple[Any, ...] = ()) -> int:
    """Run a write on a connection of its own (committed at once); returns the row count."""
    return await asyncio.to_thread(_execute, sql, params)


async def scalar(sql: str, params: tuple[Any, ...] = ()) -> Any:
    [[value]] = await rows(sql, params)
    return value


async def settles(
    predicate: Callable[[], Awaitable[Any] | Any], within: float, interval: float = 0.02
) -> bool:
    """Like :func:`eventually`, but False instead of an error when time is up."""
    try:
        await eventually(predicate, within, interval)
    except AssertionError:
        return False
    return True


async def status_of(job_id: str) -> str | None:
    found = await rows(
        "SELECT status FROM soniq_jobs WHERE id = %s "
        "UNION ALL SELECT 'dead_letter' FROM soniq_dead_letter_jobs WHERE id = %s",
        (job_id, job_id),
    )
    return str(found[0][0]) if found else None


async def worker_status(worker_id: str) -> str | None:
    found = await rows("SELECT status FROM soniq_workers WHERE id = %s", (worker_id,))
    return str(found[0][0]) if found else None


@asynccontextmanager
async def running(worker: Worker, **run_kwargs: Any) -> AsyncIterator[asyncio.Task[bool]]:
    """``worker.run()`` in a task, registered before the body starts; stopped after it."""
    task = asyncio.create_task(worker.run(**run_kwargs))
    try:
        await eventually(lambda: _registered_or_done(worker, task))
        yield task
    finally:
        worker.stop()
        await bounded(asyncio.shield(task))


async def _registered_or_done(worker: Worker, task: asyncio.Task[bool]) -> bool:
    return task.done() or await worker_status(worker.id) == "running"

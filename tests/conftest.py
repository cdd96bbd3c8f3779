"""Fixtures: a fresh soniq app with the test jobs, on each database alias."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from soniq import Soniq
from soniq.worker import Worker
from tests.jobs import JobSet, register_jobs

BOTH_DATABASES = ["default", "sqlite"]


@pytest.fixture(params=BOTH_DATABASES, ids=["postgres", "sqlite"])
def alias(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def jobs(alias: str) -> JobSet:
    """The test jobs on an app bound to ``alias`` (PostgreSQL or SQLite)."""
    return register_jobs(Soniq(database=alias))


@pytest_asyncio.fixture
async def async_db() -> AsyncIterator[None]:
    """For async tests using the ORM: close the connections asgiref's thread opened.

    Django's sync layer runs on asgiref's single thread-sensitive executor; a connection left
    open there would keep the test database busy and break its teardown.
    """
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()


@pytest_asyncio.fixture
async def workers() -> AsyncIterator[Callable[..., Worker]]:
    """``workers(app)`` makes a worker with ``app.make_worker()``; its backend is closed at
    teardown whatever the test did."""
    made: list[Worker] = []

    def make(application: Soniq, concurrency: int | None = None) -> Worker:
        worker: Worker = application.make_worker(concurrency)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        await worker.backend.close()

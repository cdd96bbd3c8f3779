"""A worker whose database calls fail for a moment: claims, completions and failures are
retried after ERROR_RETRY_DELAY, and no outcome is lost."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

from soniq import JobContext, JobStatus, Soniq
from soniq.worker import Worker
from tests.worker.conftest import bounded, eventually, running, status_of

pytestmark = [pytest.mark.django_db(transaction=True)]

MakeWorker = Callable[..., Worker]


class Flaky:
    """Wraps one backend method: the first ``failures`` calls raise OperationalError."""

    def __init__(self, method: Callable[..., Awaitable[Any]], failures: int) -> None:
        self.method = method
        self.failures = failures
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise psycopg.OperationalError("the database went away (test)")
        return await self.method(*args, **kwargs)


def make_flaky(worker: Worker, name: str, failures: int) -> Flaky:
    flaky = Flaky(getattr(worker.backend, name), failures)
    setattr(worker.backend, name, flaky)
    return flaky


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


@pytest.mark.asyncio
async def test_a_failed_claim_is_retried(
    app: Soniq, workers: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    @app.job(name="wk.claimed_later")
    async def claimed_later() -> str:
        return "ran"

    job_id = await app.enqueue(claimed_later)
    worker = workers(app)
    flaky = make_flaky(worker, "claim_jobs", 2)
    with caplog.at_level(logging.ERROR, logger="soniq.worker"):
        async with running(worker):
            await eventually(lambda: _is(job_id, "done"), within=5)
    assert flaky.calls >= 3
    assert sum("claiming jobs failed" in message for message in _messages(caplog)) == 2


@pytest.mark.asyncio
async def test_a_completion_that_cannot_be_written_is_retried_not_dropped(
    app: Soniq, workers: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[int] = []

    @app.job(name="wk.completed_later")
    async def completed_later(n: int) -> int:
        runs.append(n)
        return n

    ids = await app.enqueue_many(completed_later, [{"n": n} for n in range(3)])
    worker = workers(app)
    flaky = make_flaky(worker, "complete_jobs", 2)
    with caplog.at_level(logging.ERROR, logger="soniq.worker"):
        async with running(worker):
            for job_id in ids:
                await eventually(lambda job_id=job_id: _is(job_id, "done"), within=5)
    assert sorted(runs) == [0, 1, 2], "each job ran once: a write failure does not rerun it"
    assert flaky.calls >= 3
    assert any("could not record" in message for message in _messages(caplog))
    for n, job_id in enumerate(ids):
        info = await app.get_job(job_id)
        assert info is not None and info.result == n and info.attempts == 1


@pytest.mark.asyncio
async def test_a_failure_that_cannot_be_written_is_retried(
    app: Soniq, workers: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    @app.job(name="wk.fails_once", retries=1, retry_delay=0)
    async def fails_once(ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "second attempt"

    job_id = await app.enqueue(fails_once)
    worker = workers(app)
    flaky = make_flaky(worker, "retry_job", 2)
    with caplog.at_level(logging.ERROR, logger="soniq.worker"):
        assert await bounded(worker.run_once())
    assert flaky.calls == 3
    info = await app.get_job(job_id)
    assert info is not None and info.status is JobStatus.DONE
    assert (info.result, info.attempts) == ("second attempt", 2)
    assert [error["message"] for error in info.errors] == ["first attempt fails"]
    assert sum("could not record the outcome" in m for m in _messages(caplog)) == 2


async def _is(job_id: str, status: str) -> bool:
    return await status_of(job_id) == status

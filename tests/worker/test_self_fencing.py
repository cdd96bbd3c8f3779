"""A worker out of contact with the database past its lease fences itself: it stops claiming,
cancels its async jobs, flags its sync ones, and gives back what it cancelled when contact
returns; a worker presumed dead meanwhile carries on under a new id, its old row left dead.

Contact is cut by making the worker's heartbeats fail (its other statements still work), so
the test controls exactly when the lease runs out."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

from soniq import JobContext, JobStatus, Soniq
from soniq.backends.postgres import PostgresBackend
from soniq.worker import Worker
from tests.helpers import conninfo
from tests.worker.conftest import eventually, running, scalar, status_of, worker_status

pytestmark = [pytest.mark.django_db(transaction=True)]

MakeWorker = Callable[..., Worker]


class Cut:
    """Replaces the worker's heartbeat: while ``on``, it fails as if the database were away."""

    def __init__(self, worker: Worker) -> None:
        self.heartbeat: Callable[[str], Awaitable[str | None]] = worker.backend.heartbeat
        self.on = False
        self.failed = 0
        worker.backend.heartbeat = self  # type: ignore[method-assign]

    async def __call__(self, worker_id: str) -> str | None:
        if self.on:
            self.failed += 1
            raise psycopg.OperationalError("the database is out of reach (test)")
        return await self.heartbeat(worker_id)


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == level]


@pytest.mark.asyncio
async def test_out_of_contact_the_worker_gives_up_its_jobs_and_takes_nothing_new(
    app: Soniq, workers: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []
    sync_may_end = threading.Event()

    @app.job(name="fence.long_async")
    async def long_async(ctx: JobContext) -> str:
        events.append(f"async start {ctx.attempt}")
        try:
            await asyncio.sleep(0 if len(events) > 2 else 60)
        except asyncio.CancelledError:
            events.append("async cancelled")
            raise
        return "async done"

    @app.job(name="fence.long_sync")
    def long_sync(ctx: JobContext) -> str:
        sync_may_end.wait(20)
        return "gave up early" if ctx.contact_lost else "ran to the end"

    stopping_runs: list[bool] = []

    @app.job(name="fence.sync_stops", retries=0)
    def sync_stops(ctx: JobContext) -> str:
        stopping_runs.append(True)
        if len(stopping_runs) > 1:
            return "ran again"
        deadline = time.monotonic() + 20
        while not ctx.contact_lost and time.monotonic() < deadline:
            time.sleep(0.01)
        raise RuntimeError("stopping early: the worker lost contact")

    @app.job(name="fence.later")
    async def later() -> str:
        return "later"

    async_id = await app.enqueue(long_async)
    sync_id = await app.enqueue(long_sync)
    stops_id = await app.enqueue(sync_stops)
    worker = workers(app)
    observed: list[tuple[str, str]] = []  # what the worker's observer (its metrics) is told

    class Observer:
        def job_ended(self, job: Any, outcome: str, started: float) -> None:
            observed.append((job.task_name, outcome))

    worker.observer = Observer()
    cut = Cut(worker)
    with caplog.at_level(logging.INFO, logger="soniq.worker"):
        async with running(worker, concurrency=4):
            await eventually(lambda: "async start 1" in events)
            await eventually(lambda: _started(sync_id))
            await eventually(lambda: _started(stops_id))
            cut.on = True
            # The lease (0.75 x 2 x 0.2 s) runs out: the async job is cancelled at once.
            await eventually(lambda: "async cancelled" in events, within=5)
            # Nothing is claimed while out of contact.
            later_id = await app.enqueue(later)
            failed = cut.failed
            await eventually(lambda: cut.failed >= failed + 3, within=5)  # some time passed
            assert await status_of(later_id) == "queued"
            sync_may_end.set()
            await eventually(lambda: _is(sync_id, "done"))  # other writes still get through
            cut.on = False
            # Contact is back: the cancelled job was given back, uncharged, and runs again.
            await eventually(lambda: _is(async_id, "done"), within=5)
            await eventually(lambda: _is(later_id, "done"), within=5)
            await eventually(lambda: _is(stops_id, "done"), within=5)

    job = await app.get_job(async_id)
    assert job is not None and job.status is JobStatus.DONE
    assert (job.attempts, job.errors, job.result) == (1, [], "async done")
    assert events[:3] == ["async start 1", "async cancelled", "async start 1"]
    synced = await app.get_job(sync_id)
    assert synced is not None and synced.result == "gave up early", "ctx.contact_lost was set"
    stopped = await app.get_job(stops_id)
    assert stopped is not None
    assert (stopped.result, stopped.attempts, stopped.errors) == ("ran again", 1, []), (
        "a job that stopped because of ctx.contact_lost is put back uncharged"
    )
    # The attempts cut off (cancelled, or failed because contact was lost) ended in nothing:
    # each job went back uncharged, and only its next attempt counts.
    assert sorted(observed) == [
        ("fence.later", "succeeded"),
        ("fence.long_async", "succeeded"),
        ("fence.long_sync", "succeeded"),
        ("fence.sync_stops", "succeeded"),
    ]
    assert cut.failed >= 2
    warnings = _messages(caplog, logging.WARNING)
    assert any("cannot reach the database" in message for message in warnings)
    assert any("no contact with the database" in message for message in warnings)
    assert any("1 async job(s) cancelled, 2 sync job(s)" in message for message in warnings)
    infos = _messages(caplog, logging.INFO)
    assert any("reaches the database again" in message for message in infos)
    assert any("1 job(s) put back in the queue" in message for message in infos)


@pytest.mark.asyncio
async def test_a_worker_presumed_dead_while_cut_off_comes_back_under_a_new_id(
    app: Soniq, workers: MakeWorker
) -> None:
    runs: list[int] = []

    @app.job(name="fence.taken_back")
    async def taken_back(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        await asyncio.sleep(60 if ctx.attempt == 1 else 0)

    job_id = await app.enqueue(taken_back)
    worker = workers(app)
    cut = Cut(worker)
    async with running(worker, concurrency=2):
        await eventually(lambda: runs == [1])
        old_id = worker.id
        cut.on = True
        await eventually(lambda: worker._liveness is not None and worker._liveness.fenced)
        # Another worker's recovery pass finds it dead (its heartbeat is older than 0 s).
        other = PostgresBackend(conninfo())
        try:
            report = await other.recover_stale_workers(
                heartbeat_timeout=0, lock_grace=3600, max_losses=3
            )
        finally:
            await other.close()
        assert old_id in report.dead_workers and report.requeued == 1
        cut.on = False
        await eventually(lambda: worker.id != old_id, within=5)
        # The requeued job runs again (its second attempt: the lost run was charged).
        await eventually(lambda: _is(job_id, "done"), within=5)
        assert await worker_status(worker.id) == "running"
    assert runs == [1, 2]
    assert await worker_status(old_id) == "dead"
    assert await scalar(
        "SELECT last_heartbeat_at <= stopped_at FROM soniq_workers WHERE id = %s", (old_id,)
    ), "a dead row stays dead: no heartbeat after its death"


async def _is(job_id: str, status: str) -> bool:
    return await status_of(job_id) == status


async def _started(job_id: str) -> Any:
    return await scalar("SELECT started_at IS NOT NULL FROM soniq_jobs WHERE id = %s", (job_id,))

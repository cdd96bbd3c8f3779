"""The error history keeps the newest ``ERROR_HISTORY_LIMIT`` entries of a job, and counts the
older ones it drops (``errors_dropped``), through retries, dead-lettering, recovery and
requeues: the same on every backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from soniq import JobContext, JobInfo, JobStatus, Soniq
from soniq.backends.base import WorkerBackend
from soniq.core.records import WorkerInfo
from soniq.worker import Worker
from tests.conformance.conftest import CONFORMANCE, backend_name, worker_info
from tests.helpers import bounded

LIMIT = 3

pytestmark = [
    CONFORMANCE,
    pytest.mark.asyncio,
    pytest.mark.soniq_settings(error_history_limit=LIMIT),
]

MakeWorker = Callable[..., Worker]


async def stored(app: Soniq, job_id: str) -> JobInfo:
    info = await app.get_job(job_id)
    assert info is not None, f"{backend_name(app)}: job {job_id} not found"
    return info


def attempts_of(info: JobInfo) -> list[int]:
    return [error["attempt"] for error in info.errors]


async def test_retries_keep_the_newest_errors_and_count_the_others(app: Soniq) -> None:
    @app.job(name="conf.history.flaky", retries=6, retry_delay=0)
    async def flaky(ctx: JobContext) -> str:
        if ctx.attempt < 6:
            raise RuntimeError(f"boom {ctx.attempt}")
        return "finally"

    job_id = await app.enqueue(flaky)
    assert (await stored(app, job_id)).errors_dropped == 0
    assert await bounded(app.run_worker(run_once=True)) is True
    info = await stored(app, job_id)
    assert (info.status, info.attempts) == (JobStatus.DONE, 6)
    assert attempts_of(info) == [3, 4, 5], "the newest, oldest first"
    assert [error["message"] for error in info.errors] == ["boom 3", "boom 4", "boom 5"]
    assert info.errors_dropped == 2


@pytest.mark.parametrize("action", ["requeue_dead_letters", "retry_jobs"])
async def test_the_cap_and_the_count_carry_over_dead_letters_and_requeues(
    app: Soniq, workers: MakeWorker, action: str
) -> None:
    rounds = [1]

    @app.job(name="conf.history.doomed", retries=4, retry_delay=0)
    async def doomed(ctx: JobContext) -> None:
        raise ValueError(f"round {rounds[0]}, attempt {ctx.attempt}")

    job_id = await app.enqueue(doomed)
    assert await bounded(workers(app).run_once()) is True
    dead = await stored(app, job_id)
    assert (dead.status, dead.attempts) == (JobStatus.DEAD_LETTER, 5)
    assert attempts_of(dead) == [3, 4, 5], "the final error is the newest kept"
    assert dead.errors_dropped == 2

    result = await getattr(app, action)([job_id])
    assert result.applied == (job_id,)
    requeued = await stored(app, job_id)
    assert (requeued.status, requeued.attempts) == (JobStatus.QUEUED, 0)
    assert (requeued.errors, requeued.errors_dropped) == (dead.errors, 2), "both kept"

    rounds[0] = 2
    assert await bounded(workers(app).run_once()) is True
    again = await stored(app, job_id)
    assert again.status is JobStatus.DEAD_LETTER
    assert [error["message"] for error in again.errors] == [
        f"round 2, attempt {attempt}" for attempt in (3, 4, 5)
    ]
    assert again.errors_dropped == 2 + 5, "ten failures in all, three kept"


def _failure(attempt: int) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "error_type": "builtins.RuntimeError",
        "message": f"failed attempt {attempt}",
        "traceback": "",
    }


async def _fail_attempts(
    backend: WorkerBackend, worker: WorkerInfo, job_id: str, attempts: int
) -> None:
    """Claim, start and fail the job ``attempts`` times, as a worker would."""
    for attempt in range(1, attempts + 1):
        [claimed] = await backend.claim_jobs(worker.id, worker.task_names, None, 1)
        assert (claimed.id, claimed.attempt) == (job_id, attempt)
        assert await backend.start_jobs(worker.id, [(job_id, attempt)]) == 1
        assert await backend.retry_job(worker.id, job_id, attempt, 0, _failure(attempt))


async def _lose_next_attempt(backend: WorkerBackend, worker: WorkerInfo, job_id: str) -> Any:
    """Claim and start the job's next attempt, then lose the worker and recover the job."""
    [claimed] = await backend.claim_jobs(worker.id, worker.task_names, None, 1)
    assert claimed.id == job_id
    assert await backend.start_jobs(worker.id, [(job_id, claimed.attempt)]) == 1
    await backend.deregister_worker(worker.id)  # its jobs are recovered at once
    return await backend.recover_stale_workers(
        heartbeat_timeout=3600, lock_grace=3600, max_losses=3
    )


async def test_a_lost_worker_s_entry_respects_the_cap(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    @app.job(name="conf.history.lost", retries=9)
    async def lost() -> None:
        return None

    job_id = await app.enqueue(lost)
    worker = worker_info(("conf.history.lost",))
    await worker_backend.register_worker(worker, None)
    await _fail_attempts(worker_backend, worker, job_id, LIMIT)
    full = await stored(app, job_id)
    assert (attempts_of(full), full.errors_dropped) == ([1, 2, 3], 0), "within the limit"

    report = await _lose_next_attempt(worker_backend, worker, job_id)
    assert (report.requeued, report.dead_lettered) == (1, 0)
    info = await stored(app, job_id)
    assert info.status is JobStatus.QUEUED
    assert attempts_of(info) == [2, 3, 4]
    assert info.errors[-1]["error_type"] == "soniq.WorkerLost"
    assert info.errors_dropped == 1


async def test_a_job_lost_on_its_last_attempt_is_dead_lettered_with_the_cap(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    @app.job(name="conf.history.last", retries=LIMIT + 1)
    async def last() -> None:
        return None

    job_id = await app.enqueue(last)
    worker = worker_info(("conf.history.last",))
    await worker_backend.register_worker(worker, None)
    await _fail_attempts(worker_backend, worker, job_id, LIMIT + 1)
    report = await _lose_next_attempt(worker_backend, worker, job_id)
    assert (report.requeued, report.dead_lettered) == (0, 1)
    info = await stored(app, job_id)
    assert (info.status, info.dead_letter_reason) == (JobStatus.DEAD_LETTER, "max_attempts")
    assert attempts_of(info) == [3, 4, 5]
    assert info.errors[-1]["error_type"] == "soniq.WorkerLost"
    assert info.errors_dropped == 2

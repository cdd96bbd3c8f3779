"""Job control on every backend: Snooze and Cancel raised by a job, the abort of running jobs,
and waiting for a job's end (``wait_for``, ``result_model=``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pydantic
import pytest

import soniq.core.control
from soniq import (
    Cancel,
    JobCancelledError,
    JobContext,
    JobFailedError,
    JobInfo,
    JobNotFoundError,
    JobStatus,
    ResultValidationError,
    Snooze,
    Soniq,
)
from soniq.backends.base import WorkerBackend
from soniq.worker import Worker
from tests.conformance.conftest import (
    CONFORMANCE,
    backend_name,
    bounded,
    eventually,
    worker_info,
)

pytestmark = [CONFORMANCE, pytest.mark.asyncio]

MakeWorker = Callable[..., Worker]
# The worker looks for abort requests every second (at once on a NOTIFY): a request is
# acted on well within this, on every backend.
ABORT_DEADLINE = 3.0


async def stored(app: Soniq, job_id: str) -> JobInfo:
    info = await app.get_job(job_id)
    assert info is not None, f"{backend_name(app)}: job {job_id} not found"
    return info


@asynccontextmanager
async def running(worker: Worker, concurrency: int = 2) -> AsyncIterator[asyncio.Task[bool]]:
    task = asyncio.create_task(worker.run(concurrency=concurrency))
    try:
        yield task
    finally:
        worker.stop()
        await bounded(asyncio.shield(task))


async def _status(app: Soniq, job_id: str, status: JobStatus) -> bool:
    info = await app.get_job(job_id)
    return info is not None and info.status is status


async def test_a_snooze_requeues_without_charging_the_attempt(
    app: Soniq, workers: MakeWorker
) -> None:
    calls: list[tuple[int, int]] = []

    @app.job(name="ctl.wait_for_file", retries=0)
    async def wait_for_file(ctx: JobContext, later: float) -> str:
        calls.append((ctx.attempt, ctx.snoozes))
        if len(calls) == 1 or later:
            raise Snooze(timedelta(seconds=later), reason="file not there yet")
        return "read"

    now_ish = datetime.now(UTC)
    soon = await app.enqueue(wait_for_file, later=0)
    worker = workers(app)
    assert await bounded(worker.run_once()) is True
    done = await stored(app, soon)
    # retries=0: a charged attempt would have ended it on the first snooze.
    assert (done.status, done.attempts, done.snoozes, done.result) == (
        JobStatus.DONE,
        1,
        1,
        "read",
    )
    assert calls == [(1, 0), (1, 1)]
    assert [entry["error_type"] for entry in done.errors] == ["soniq.core.control.Snooze"]
    assert done.errors[0]["message"] == "file not there yet"

    far = await app.enqueue(wait_for_file, later=3600)
    assert await bounded(worker.run_once()) is True
    waiting = await stored(app, far)
    assert (waiting.status, waiting.attempts, waiting.snoozes) == (JobStatus.QUEUED, 0, 1)
    assert waiting.scheduled_at is not None
    assert timedelta(minutes=59) < waiting.scheduled_at - now_ish < timedelta(minutes=61)


async def test_a_job_that_snoozes_too_often_becomes_a_dead_letter(
    app: Soniq, workers: MakeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(soniq.core.control, "MAX_SNOOZES", 3)

    @app.job(name="ctl.never_ready")
    def never_ready() -> None:
        raise Snooze(0)

    job_id = await app.enqueue(never_ready)
    assert await bounded(workers(app).run_once()) is True
    out = await stored(app, job_id)
    assert (out.status, out.dead_letter_reason, out.attempts) == (
        JobStatus.DEAD_LETTER,
        "max_snoozes",
        1,
    )
    assert len(out.errors) == 4  # three snoozes, then the one refused


async def test_a_job_cancels_itself_with_a_reason(app: Soniq, workers: MakeWorker) -> None:
    @app.job(name="ctl.withdrawn", retries=3)
    def withdrawn(order: int) -> None:
        raise Cancel(f"order {order} was withdrawn")

    job_id = await app.enqueue(withdrawn, order=7)
    assert await bounded(workers(app).run_once()) is True
    out = await stored(app, job_id)
    assert (out.status, out.attempts, out.finished_at is not None) == (
        JobStatus.CANCELLED,
        1,
        True,
    )
    assert out.errors[-1]["error_type"] == "soniq.core.control.Cancel"
    assert out.errors[-1]["message"] == "order 7 was withdrawn"
    with pytest.raises(JobCancelledError, match="order 7 was withdrawn") as caught:
        await app.wait_for(job_id, timeout=5)
    assert caught.value.reason == "order 7 was withdrawn"


async def test_an_abort_cancels_a_running_async_job(app: Soniq, workers: MakeWorker) -> None:
    started = asyncio.Event()
    seen: list[str] = []

    @app.job(name="ctl.long_async", timeout=600)
    async def long_async() -> None:
        started.set()
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    job_id = await app.enqueue(long_async)
    worker = workers(app)
    async with running(worker):
        await bounded(started.wait())
        await eventually(lambda: _started(app, job_id))
        asked = time.monotonic()
        result = await app.cancel_jobs([job_id], abort=True, by="ops@example")
        assert result.applied == (job_id,) and result.refused == {}
        await eventually(lambda: _status(app, job_id, JobStatus.CANCELLED), within=ABORT_DEADLINE)
        latency = time.monotonic() - asked
    assert seen == ["cancelled"]
    assert latency < ABORT_DEADLINE
    out = await stored(app, job_id)
    assert (out.abort_requested_by, out.attempts) == ("ops@example", 1)
    assert out.abort_requested_at is not None
    assert out.errors[-1]["error_type"] == "soniq.core.control.Aborted"
    assert "abort requested by ops@example" in out.errors[-1]["message"]


async def _started(app: Soniq, job_id: str) -> bool:
    info = await app.get_job(job_id)
    return info is not None and info.status is JobStatus.PROCESSING


async def test_an_abort_reaches_a_sync_job_through_its_context(
    app: Soniq, workers: MakeWorker
) -> None:
    started = threading.Event()

    @app.job(name="ctl.long_sync", timeout=600)
    def long_sync(ctx: JobContext) -> str:
        started.set()
        deadline = time.monotonic() + 60
        while not ctx.abort_requested:
            assert time.monotonic() < deadline, "the abort never arrived"
            time.sleep(0.01)
        return "stopped early"

    job_id = await app.enqueue(long_sync)
    worker = workers(app)
    async with running(worker):
        await eventually(started.is_set)
        await eventually(lambda: _started(app, job_id))
        await app.cancel_jobs([job_id], abort=True, by="ops")
        await eventually(lambda: _status(app, job_id, JobStatus.CANCELLED), within=ABORT_DEADLINE)
    out = await stored(app, job_id)
    assert out.result == "stopped early"  # what it returned is kept
    assert out.errors[-1]["error_type"] == "soniq.core.control.Aborted"


async def test_wait_for_abort_wakes_an_async_job(app: Soniq, workers: MakeWorker) -> None:
    tidied: list[bool] = []

    @app.job(name="ctl.waits_for_abort")
    async def waits_for_abort(ctx: JobContext) -> str:
        await ctx.wait_for_abort()
        # Not cancelled while it waited: it tidies up, awaiting, and returns.
        await asyncio.sleep(0.05)
        tidied.append(ctx.abort_requested)
        return "tidied"

    job_id = await app.enqueue(waits_for_abort)
    async with running(workers(app)):
        await eventually(lambda: _started(app, job_id))
        await app.cancel_jobs([job_id], abort=True)
        await eventually(lambda: _status(app, job_id, JobStatus.CANCELLED), within=ABORT_DEADLINE)
    assert tidied == [True]
    out = await stored(app, job_id)
    assert out.abort_requested_by  # user@host of this process by default
    assert out.result == "tidied"


async def test_abort_cancels_queued_jobs_and_refuses_finished_ones(
    app: Soniq, workers: MakeWorker
) -> None:
    @app.job(name="ctl.quick")
    def quick() -> int:
        return 1

    finished = await app.enqueue(quick)
    assert await bounded(workers(app).run_once()) is True
    queued = await app.enqueue(quick)
    missing = "00000000-0000-0000-0000-000000000001"
    result = app.cancel_jobs_sync([queued, finished, missing], abort=True, by="ops")
    assert result.applied == (queued,)
    assert "already finished" in result.refused[finished]
    assert "no such job" in result.refused[missing]
    assert (await stored(app, queued)).status is JobStatus.CANCELLED
    # Without abort=True a running job is still refused (see the operator actions' tests).


async def test_a_job_released_after_its_abort_was_requested_ends_cancelled(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    @app.job(name="ctl.claimed")
    def claimed() -> None:
        raise AssertionError("never runs")

    job_id = await app.enqueue(claimed)
    info = worker_info(("ctl.claimed",))
    await worker_backend.register_worker(info, None)
    [job] = await worker_backend.claim_jobs(info.id, ["ctl.claimed"], None, 1)
    await app.cancel_jobs([job_id], abort=True, by="ops")
    assert [(i, by) for i, by, _ in await worker_backend.aborts_requested(info.id)] == [
        (job_id, "ops")
    ]
    waiter = asyncio.create_task(app.wait_for(job_id, timeout=10))
    assert await worker_backend.release_jobs(info.id, [(job.id, job.attempt)]) == 1
    with pytest.raises(JobCancelledError):
        await bounded(waiter)
    out = await stored(app, job_id)
    assert (out.status, out.attempts) == (JobStatus.CANCELLED, 0)
    assert await worker_backend.aborts_requested(info.id) == []


async def test_an_aborted_job_retried_by_an_operator_runs_again(
    app: Soniq, workers: MakeWorker
) -> None:
    runs: list[int] = []

    @app.job(name="ctl.second_chance")
    async def second_chance(ctx: JobContext) -> str:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            await asyncio.sleep(600)
        return "done at last"

    job_id = await app.enqueue(second_chance)
    async with running(workers(app)):
        await eventually(lambda: _started(app, job_id))
        await app.cancel_jobs([job_id], abort=True, by="ops")
        await eventually(lambda: _status(app, job_id, JobStatus.CANCELLED), within=ABORT_DEADLINE)
        assert (await app.retry_jobs([job_id])).applied == (job_id,)
        info = await bounded(app.wait_for(job_id, timeout=10))
    assert (info.result, info.abort_requested_at, info.abort_requested_by) == (
        "done at last",
        None,
        None,
    )
    assert len(runs) == 2


async def test_a_job_cancelled_while_queued_has_no_reason(app: Soniq, workers: MakeWorker) -> None:
    @app.job(name="ctl.fails_once", retries=2, retry_delay=3600)
    def fails_once() -> None:
        raise RuntimeError("database password rejected")

    job_id = await app.enqueue(fails_once)
    assert await bounded(workers(app).run_once()) is True  # failed once, retry in an hour
    await app.cancel_jobs([job_id])
    with pytest.raises(JobCancelledError) as caught:
        await app.wait_for(job_id, timeout=5)
    assert caught.value.reason == ""
    assert "password" not in str(caught.value)


class Receipt(pydantic.BaseModel):
    order: int
    total: float


async def test_wait_for_returns_the_result_or_raises(app: Soniq, workers: MakeWorker) -> None:
    @app.job(name="ctl.receipt")
    async def receipt(order: int) -> dict[str, float]:
        await asyncio.sleep(0.2)
        return {"order": order, "total": 9.5}

    @app.job(name="ctl.broken", retries=1, retry_delay=0)
    def broken() -> None:
        raise ValueError("card declined")

    @app.job(name="ctl.never_runs")
    def never_runs() -> None:
        raise AssertionError("not served by any worker")

    good = await app.enqueue(receipt, order=5)
    bad = await app.enqueue(broken)
    with pytest.raises(JobNotFoundError):
        await app.wait_for("00000000-0000-0000-0000-000000000002", timeout=1)
    async with running(workers(app)):
        info = await bounded(app.wait_for(good, timeout=10, result_model=Receipt))
        assert info.status is JobStatus.DONE
        assert info.result == Receipt(order=5, total=9.5)
        with pytest.raises(JobFailedError, match="card declined") as failed:
            await bounded(app.wait_for(bad, timeout=10))
    assert failed.value.reason == "max_attempts"
    assert [entry["message"] for entry in failed.value.errors] == ["card declined"] * 2
    assert (await app.get_job(good, result_model=Receipt)).result == Receipt(order=5, total=9.5)  # type: ignore[union-attr]
    with pytest.raises(ResultValidationError):
        await app.get_job(good, result_model=int)
    # Queued, no worker: a timeout; the job is left as it was.
    idle = await app.enqueue(never_runs, scheduled_at=datetime.now(UTC) + timedelta(hours=1))
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        await app.wait_for(idle, timeout=0.3)
    assert time.monotonic() - began < 5
    assert (await stored(app, idle)).status is JobStatus.QUEUED
    with pytest.raises(ValueError, match="timeout"):
        await app.wait_for(idle, timeout=-1)


async def test_wait_for_sync_sees_a_cancel(app: Soniq) -> None:
    @app.job(name="ctl.to_cancel")
    def to_cancel() -> None:
        raise AssertionError("cancelled before it runs")

    job_id = await app.enqueue(to_cancel)

    def cancel_soon() -> None:
        time.sleep(0.3)
        app.cancel_jobs_sync([job_id])

    canceller = threading.Thread(target=cancel_soon)
    canceller.start()
    try:
        with pytest.raises(JobCancelledError) as caught:
            await asyncio.to_thread(app.wait_for_sync, job_id, timeout=10)
    finally:
        canceller.join()
    assert caught.value.reason == ""
    assert caught.value.job.status is JobStatus.CANCELLED


async def test_an_async_job_that_catches_its_abort_still_ends_cancelled(
    app: Soniq, workers: MakeWorker
) -> None:
    @app.job(name="ctl.stubborn_async")
    async def stubborn_async() -> str:
        # Tidies up and returns instead of re-raising.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(600)
        await asyncio.sleep(0)  # the task must not still count the abort's cancellation
        async with asyncio.timeout(5):
            await asyncio.sleep(0.01)
        return "tidied"

    job_id = await app.enqueue(stubborn_async)
    async with running(workers(app)):
        await eventually(lambda: _started(app, job_id))
        await app.cancel_jobs([job_id], abort=True, by="ops")
        await eventually(lambda: _status(app, job_id, JobStatus.CANCELLED), within=ABORT_DEADLINE)
    out = await stored(app, job_id)
    assert (out.result, out.errors[-1]["error_type"]) == ("tidied", "soniq.core.control.Aborted")

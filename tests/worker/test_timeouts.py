"""Per-attempt time limits: async and sync jobs, the JOB_TIMEOUT default, and what is recorded."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from soniq import JobContext, JobStatus, Soniq
from soniq.worker import Worker
from soniq.worker.execution import JobTimeoutError
from tests.worker.conftest import bounded, eventually, make_app, running, scalar, status_of

pytestmark = [pytest.mark.django_db(transaction=True)]

MakeWorker = Callable[..., Worker]
TIMEOUT_TYPE = "soniq.worker.execution.JobTimeoutError"


async def _info(app: Soniq, job_id: str) -> Any:
    info = await app.get_job(job_id)
    assert info is not None
    return info


async def _is(job_id: str, status: str) -> bool:
    return await status_of(job_id) == status


@pytest.mark.asyncio
async def test_an_async_job_over_its_timeout_is_retried_then_dead_lettered(
    app: Soniq, workers: MakeWorker
) -> None:
    cancellations: list[int] = []
    errors_seen: list[BaseException] = []

    @app.job(name="wk.too_slow", timeout=0.2, retries=1, retry_delay=0)
    async def too_slow(ctx: JobContext) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancellations.append(ctx.attempt)
            raise

    @app.job(name="wk.quick", timeout=5)
    async def quick() -> str:
        return "fine"

    app.hooks["on_error"].append(lambda ctx, exc: errors_seen.append(exc))
    slow_id = await app.enqueue(too_slow)
    quick_id = await app.enqueue(quick)
    worker = workers(app)
    async with running(worker):
        await eventually(lambda: _is(slow_id, "dead_letter"), within=10)
        await eventually(lambda: _is(quick_id, "done"), within=5)
    assert cancellations == [1, 2], "the job itself was cancelled at each timeout"
    info = await _info(app, slow_id)
    assert info.dead_letter_reason == "max_attempts"
    assert [e["error_type"] for e in info.errors] == [TIMEOUT_TYPE, TIMEOUT_TYPE]
    assert [e["attempt"] for e in info.errors] == [1, 2]
    assert info.errors[0]["message"] == "wk.too_slow timed out after 0.2 s"
    assert [type(exc) for exc in errors_seen] == [JobTimeoutError, JobTimeoutError]


@pytest.mark.asyncio
async def test_the_job_timeout_setting_applies_to_jobs_without_their_own() -> None:
    app = make_app(job_timeout=0.2)
    try:

        @app.job(name="wk.default_limit", retries=0)
        async def default_limit() -> None:
            await asyncio.Event().wait()

        job_id = await app.enqueue(default_limit)
        assert await bounded(app.run_worker(run_once=True))
        info = await _info(app, job_id)
        assert info.status is JobStatus.DEAD_LETTER
        assert info.errors[0]["error_type"] == TIMEOUT_TYPE
        assert info.errors[0]["message"] == "wk.default_limit timed out after 0.2 s"
    finally:
        await app.close()


@pytest.mark.asyncio
async def test_a_sync_job_over_its_timeout_fails_and_keeps_its_slot_until_its_thread_returns(
    app: Soniq, workers: MakeWorker
) -> None:
    """Python cannot stop a thread: the overrunning job keeps its thread, and with it its slot.
    The worker claims nothing for that slot meanwhile (the next job stays in the queue for
    other workers), then runs the next job once the thread comes free."""
    release = threading.Event()
    ran: list[str] = []

    @app.job(name="wk.stuck", timeout=0.2, retries=0, priority=1)
    def stuck() -> None:
        release.wait(30)
        ran.append("stuck ended")

    @app.job(name="wk.next_in_line", timeout=0.5, priority=2)
    def next_in_line() -> str:
        ran.append("next ran")
        return "ok"

    stuck_id = await app.enqueue(stuck)
    next_id = await app.enqueue(next_in_line)
    worker = workers(app, 1)
    try:
        async with running(worker, concurrency=1):
            await eventually(lambda: _is(stuck_id, "dead_letter"), within=5)
            # Time passes (two heartbeats, 0.2 s apart) while the thread is still busy.
            for _ in range(2):
                moment = await scalar("SELECT now()")
                await eventually(lambda at=moment: _heartbeat_after(worker, at), within=5)
            assert await status_of(next_id) == "queued", "no slot: nothing claimed"
            release.set()
            await eventually(lambda: _is(next_id, "done"), within=5)
    finally:
        release.set()
    info = await _info(app, next_id)
    assert (info.result, info.attempts, info.errors) == ("ok", 1, [])
    stuck_info = await _info(app, stuck_id)
    assert stuck_info.errors[0]["error_type"] == TIMEOUT_TYPE
    assert ran == ["stuck ended", "next ran"]


async def _heartbeat_after(worker: Worker, moment: Any) -> bool:
    beat = await scalar("SELECT last_heartbeat_at FROM soniq_workers WHERE id = %s", (worker.id,))
    return bool(beat > moment)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_job_that_raises_timeouterror_itself_keeps_its_own_error(
    app: Soniq, kind: str
) -> None:
    """A TimeoutError raised at once by the job's own code (a socket's, an HTTP client's,
    asyncio.wait_for inside the job) is the job's error, not soniq's 60 s time limit."""

    if kind == "async":

        @app.job(name="wk.upstream_timeout", retries=0, timeout=60)
        async def upstream_timeout() -> None:
            raise TimeoutError("upstream API did not answer")

    else:

        @app.job(name="wk.upstream_timeout", retries=0, timeout=60)
        def upstream_timeout() -> None:
            raise TimeoutError("upstream API did not answer")

    job_id = await app.enqueue("wk.upstream_timeout")
    assert await bounded(app.run_worker(run_once=True))
    [error] = (await _info(app, job_id)).errors
    assert (error["error_type"], error["message"]) == (
        "builtins.TimeoutError",
        "upstream API did not answer",
    )
    assert "upstream_timeout" in error["traceback"]

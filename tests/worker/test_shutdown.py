"""Stopping a worker: graceful drain, the shutdown timeout, signals, interrupted run_once, and
the shutdown hang with the worker's real pool sizes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from soniq import JobStatus, Soniq
from soniq.worker import Worker
from tests.worker.conftest import (
    bounded,
    eventually,
    make_app,
    real_worker_backend,
    running,
    scalar,
    settles,
    status_of,
    worker_status,
)

pytestmark = [pytest.mark.django_db(transaction=True)]

MakeWorker = Callable[..., Worker]


async def _job_state(app: Soniq, job_id: str) -> tuple[JobStatus, int, list[dict[str, object]]]:
    info = await app.get_job(job_id)
    assert info is not None
    return info.status, info.attempts, info.errors


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Callable[[str], bool]:
    """``logged(text)``: whether the worker has logged a message containing ``text``."""
    caplog.set_level(logging.INFO, logger="soniq.worker")

    def check(text: str) -> bool:
        return any(text in record.getMessage() for record in caplog.records)

    return check


def _send_sigterm() -> None:
    # Only while the worker's loop handles SIGTERM: otherwise it would end the test run.
    handler = signal.getsignal(signal.SIGTERM)
    assert handler not in (signal.SIG_DFL, signal.SIG_IGN, None), "no SIGTERM handler"
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.asyncio
async def test_stop_lets_a_running_job_finish(
    app: Soniq, workers: MakeWorker, logged: Callable[[str], bool]
) -> None:
    gate = asyncio.Event()
    started = asyncio.Event()

    @app.job(name="wk.finishing")
    async def finishing() -> str:
        started.set()
        await gate.wait()
        return "finished"

    job_id = await app.enqueue(finishing)
    worker = workers(app)
    task = asyncio.create_task(worker.run())
    try:
        await bounded(started.wait())
        worker.stop()
        await eventually(lambda: logged("waiting up to 2s for 1 running job(s)"))
        assert not task.done(), "it waits for the running job"
        gate.set()
        assert await bounded(task) is True
    finally:
        gate.set()
        worker.stop()
        await bounded(task)
    assert await _job_state(app, job_id) == (JobStatus.DONE, 1, [])
    assert await worker_status(worker.id) == "stopped"


@pytest.mark.asyncio
async def test_a_job_over_the_shutdown_timeout_is_cancelled_and_requeued_uncharged(
    workers: MakeWorker,
) -> None:
    app = make_app(shutdown_timeout=0.3)
    cancelled = asyncio.Event()
    try:

        @app.job(name="wk.endless")
        async def endless() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        job_id = await app.enqueue(endless)
        worker = workers(app)
        async with running(worker) as task:
            await eventually(lambda: _status_is(job_id, "processing"))
            await eventually(lambda: _started(job_id))
        assert cancelled.is_set()
        assert task.done()
        status, attempts, errors = await _job_state(app, job_id)
        assert (status, attempts, errors) == (JobStatus.QUEUED, 0, [])
        assert await scalar("SELECT worker_id FROM soniq_jobs WHERE id = %s", (job_id,)) is None
    finally:
        await app.close()


async def _status_is(job_id: str, status: str) -> bool:
    return await status_of(job_id) == status


async def _started(job_id: str) -> bool:
    return bool(
        await scalar("SELECT started_at IS NOT NULL FROM soniq_jobs WHERE id = %s", (job_id,))
    )


@pytest.mark.asyncio
async def test_claimed_jobs_that_never_started_are_given_back_on_stop(
    app: Soniq, workers: MakeWorker
) -> None:
    gate = asyncio.Event()
    started: list[int] = []

    @app.job(name="wk.one_at_a_time")
    async def one_at_a_time(n: int) -> None:
        started.append(n)
        await gate.wait()

    @app.job(name="wk.quick")
    async def quick() -> None:
        return None

    # Hundreds of quick jobs first: at their pace the worker claims jobs ahead of its slot.
    quick_ids = await app.enqueue_many(quick, [{} for _ in range(400)], priority=1)
    ids = await app.enqueue_many(one_at_a_time, [{"n": n} for n in range(5)])
    worker = workers(app, 1)
    task = asyncio.create_task(worker.run(concurrency=1))
    try:
        await eventually(lambda: len(started) == 1)
        await eventually(lambda: _processing(5))  # the rest was claimed ahead
        worker.stop()
        gate.set()
        assert await bounded(task) is True
    finally:
        gate.set()
        worker.stop()
        await bounded(task)
    states = [await _job_state(app, job_id) for job_id in ids]
    assert states.count((JobStatus.DONE, 1, [])) == 1
    assert states.count((JobStatus.QUEUED, 0, [])) == 4
    assert len(started) == 1
    assert all([await _job_state(app, job_id) == (JobStatus.DONE, 1, []) for job_id in quick_ids])


async def _processing(expected: int) -> bool:
    count = await scalar("SELECT count(*) FROM soniq_jobs WHERE status = 'processing'")
    return bool(count == expected)


@pytest.mark.asyncio
async def test_a_sync_job_overrunning_the_shutdown_does_not_block_the_stop(
    workers: MakeWorker,
) -> None:
    app = make_app(shutdown_timeout=0.3)
    release = threading.Event()
    entered = threading.Event()
    try:

        @app.job(name="wk.stuck_thread")
        def stuck_thread() -> None:
            entered.set()
            release.wait(30)

        job_id = await app.enqueue(stuck_thread)
        worker = workers(app)
        task = asyncio.create_task(worker.run())
        try:
            await eventually(entered.is_set)
            began = time.monotonic()
            worker.stop()
            await bounded(task, 10)
            assert time.monotonic() - began < 5, "stop waited for the stuck thread"
            assert entered.is_set() and not release.is_set()
        finally:
            release.set()
            worker.stop()
            await bounded(task)
        status, attempts, _ = await _job_state(app, job_id)
        assert (status, attempts) == (JobStatus.QUEUED, 0)
    finally:
        release.set()
        await app.close()


@pytest.mark.asyncio
async def test_sigterm_then_a_second_sigterm(
    workers: MakeWorker, logged: Callable[[str], bool]
) -> None:
    app = make_app(shutdown_timeout=30)
    started = asyncio.Event()
    try:

        @app.job(name="wk.until_forced")
        async def until_forced() -> None:
            started.set()
            await asyncio.Event().wait()

        job_id = await app.enqueue(until_forced)
        worker = workers(app)
        task = asyncio.create_task(worker.run())
        try:
            await bounded(started.wait())
            _send_sigterm()
            await eventually(lambda: logged("waiting up to 30s for 1 running job(s)"))
            assert not task.done(), "the first signal waits for the running job"
            began = time.monotonic()
            _send_sigterm()
            await bounded(task, 10)
            assert time.monotonic() - began < 5, "the second signal does not wait 30 s"
        finally:
            worker.stop()
            await bounded(task)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "handlers restored"
        assert await _job_state(app, job_id) == (JobStatus.QUEUED, 0, [])
        assert await worker_status(worker.id) == "stopped"
    finally:
        await app.close()


@pytest.mark.asyncio
async def test_sigterm_during_run_once_finishes_the_current_job_and_claims_no_more(
    app: Soniq, workers: MakeWorker, logged: Callable[[str], bool]
) -> None:
    gate = asyncio.Event()
    started: list[int] = []

    @app.job(name="wk.once_gated")
    async def once_gated(n: int) -> int:
        started.append(n)
        await gate.wait()
        return n

    ids = await app.enqueue_many(once_gated, [{"n": n} for n in range(3)])
    worker = workers(app)
    task = asyncio.create_task(worker.run_once())
    try:
        await eventually(lambda: len(started) == 1)
        _send_sigterm()
        await eventually(lambda: logged("SIGTERM received"))
        gate.set()
        assert await bounded(task) is True
    finally:
        gate.set()
        await bounded(task)
    assert started == [0]
    assert [await status_of(job_id) for job_id in ids] == ["done", "queued", "queued"]


@pytest.mark.asyncio
async def test_a_second_sigterm_during_run_once_puts_the_job_back(
    app: Soniq, workers: MakeWorker, logged: Callable[[str], bool]
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @app.job(name="wk.once_forever")
    async def once_forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = await app.enqueue(once_forever)
    worker = workers(app)
    task = asyncio.create_task(worker.run_once())
    try:
        await bounded(started.wait())
        _send_sigterm()
        await eventually(lambda: logged("SIGTERM received"))
        assert not task.done()
        _send_sigterm()
        assert await bounded(task, 10) is False
    finally:
        worker.stop()
        await bounded(task)
    assert cancelled.is_set()
    assert await _job_state(app, job_id) == (JobStatus.QUEUED, 0, [])


@pytest.mark.asyncio
async def test_cancelling_run_once_stops_the_job_and_puts_it_back(
    app: Soniq, workers: MakeWorker
) -> None:
    """An interrupted run_once gives its job back to the queue; the job itself must not
    carry on in the background, or it would run twice (once here, once wherever it is
    claimed next)."""
    gate = asyncio.Event()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @app.job(name="wk.cancel_me")
    async def cancel_me() -> None:
        started.set()
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = await app.enqueue(cancel_me)
    worker = workers(app)
    task = asyncio.create_task(worker.run_once())
    await bounded(started.wait())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)
    assert await _job_state(app, job_id) == (JobStatus.QUEUED, 0, [])
    try:
        stopped = await settles(cancelled.is_set, within=1)
    finally:
        gate.set()  # lets a job left running in the background end
    assert stopped, "the job was put back in the queue but kept running in the background"


@pytest.mark.asyncio
async def test_run_once_returns_with_the_pool_sizes_soniq_gives_a_worker(app: Soniq) -> None:
    """Without the warmed pools of conftest: the worker built as ``Soniq.make_worker`` builds
    it. On Python 3.11 the liveness loops' cancellation can be lost while the cleanup task
    waits for a pooled connection (asyncio.wait_for in psycopg_pool returns the connection
    instead of raising CancelledError), and ``Liveness.stop()`` then waits forever."""

    @app.job(name="wk.noop")
    async def noop() -> None:
        return None

    worker = Worker(real_worker_backend(app, 4), app.registry, app.settings)
    task = asyncio.create_task(worker.run_once())
    try:
        done, _ = await asyncio.wait([task], timeout=2)
        stuck = sorted(
            f"{other.get_name()} (cancelling={other.cancelling()})"
            for other in asyncio.all_tasks()
            if other.get_name().startswith("soniq-") and other.cancelling()
        )
        if not done:
            # Unblock it so the test can clean up: a second cancel does land.
            for other in asyncio.all_tasks():
                if other.get_name().startswith("soniq-") and other.cancelling():
                    other.cancel()
        assert await bounded(task, 10) is False
        assert done, f"run_once() with nothing to do did not return within 2 s; stuck: {stuck}"
    finally:
        await worker.backend.close()

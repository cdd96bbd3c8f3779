"""``Worker.run()`` in a task of the test's loop: throughput, concurrency, wake-ups, presence."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from soniq import JobContext, JobStatus, Soniq, __version__
from soniq.backends.postgres import PostgresBackend
from soniq.core.records import WorkerInfo
from soniq.worker import Worker
from tests.helpers import conninfo
from tests.worker.conftest import (
    bounded,
    eventually,
    execute,
    make_app,
    rows,
    running,
    scalar,
    status_of,
    worker_status,
)

pytestmark = [pytest.mark.django_db(transaction=True)]

MakeWorker = Callable[..., Worker]


async def count_status(status: str) -> int:
    return int(await scalar("SELECT count(*) FROM soniq_jobs WHERE status = %s", (status,)))


@pytest.mark.asyncio
async def test_run_drains_300_jobs_at_concurrency_8_then_stops(
    app: Soniq, workers: MakeWorker
) -> None:
    ran: Counter[int] = Counter()
    active = 0
    most = 0

    @app.job(name="wk.tick")
    async def tick(n: int) -> int:
        nonlocal active, most
        active += 1
        most = max(most, active)
        try:
            await asyncio.sleep(0.002)  # a little work, so that jobs overlap
        finally:
            active -= 1
        ran[n] += 1
        return n

    ids = await app.enqueue_many(tick, [{"n": n} for n in range(300)])
    worker = workers(app, 8)
    async with running(worker, concurrency=8) as task:
        await eventually(lambda: _all_done(300), within=20)
        assert not task.done()
    assert task.result() is True
    assert ran == Counter(range(300)), "every job ran exactly once"
    assert most == 8
    assert await worker_status(worker.id) == "stopped"
    info = await app.get_job(ids[123])
    assert info is not None and info.result == 123 and info.attempts == 1


async def _all_done(total: int) -> bool:
    return await count_status("done") == total


@pytest.mark.asyncio
async def test_no_more_than_concurrency_jobs_run_at_once(app: Soniq, workers: MakeWorker) -> None:
    gate = asyncio.Event()
    started: list[int] = []

    @app.job(name="wk.gated")
    async def gated(n: int) -> None:
        started.append(n)
        await gate.wait()

    await app.enqueue_many(gated, [{"n": n} for n in range(10)])
    worker = workers(app, 3)
    async with running(worker, concurrency=3):
        await eventually(lambda: len(started) == 3)
        # Time has passed (a heartbeat since), yet no fourth one started, and a worker whose
        # slots are all busy holds nothing more: the other seven stay in the queue for any
        # worker with a free slot.
        await eventually(lambda: _heartbeat_after(worker, time.time()))
        assert len(started) == 3
        assert (await count_status("processing"), await count_status("queued")) == (3, 7)
        gate.set()
        await eventually(lambda: _count_is("done", 10))
    assert sorted(started) == list(range(10))


async def _started(job_id: str) -> bool:
    return bool(
        await scalar("SELECT started_at IS NOT NULL FROM soniq_jobs WHERE id = %s", (job_id,))
    )


async def _held_by(job_id: str, worker_id: str) -> bool:
    held = await scalar("SELECT worker_id::text FROM soniq_jobs WHERE id = %s", (job_id,))
    return bool(held == worker_id)


async def _count_is(status: str, expected: int) -> bool:
    return await count_status(status) == expected


async def _heartbeat_after(worker: Worker, moment: float) -> bool:
    beat = await scalar(
        "SELECT extract(epoch FROM last_heartbeat_at) FROM soniq_workers WHERE id = %s",
        (worker.id,),
    )
    return float(beat) > moment


@pytest.mark.asyncio
async def test_listen_wakes_an_idle_worker_long_before_its_poll_interval(
    workers: MakeWorker,
) -> None:
    app = make_app(poll_interval=30)
    try:

        @app.job(name="wk.ping")
        async def ping(n: int) -> int:
            return n

        worker = workers(app)
        async with running(worker):
            first = await app.enqueue(ping, n=1)
            await eventually(lambda: _is_done(first), within=5)
            # Idle now, waiting up to 30 s for work: only a notification can wake it this soon.
            for n in range(2, 5):
                began = time.monotonic()
                job_id = await app.enqueue(ping, n=n)
                await eventually(lambda job_id=job_id: _is_done(job_id), within=5)
                assert time.monotonic() - began < 5
    finally:
        await app.close()


async def _is_done(job_id: str) -> bool:
    return await status_of(job_id) == "done"


@pytest.mark.asyncio
async def test_a_notification_for_another_queue_does_not_matter_and_its_queue_still_runs(
    workers: MakeWorker,
) -> None:
    app = make_app(poll_interval=30)
    try:

        @app.job(name="wk.scoped_ping")
        async def scoped_ping() -> None:
            return None

        worker = workers(app)
        async with running(worker, queues=["mine"]):
            other = await app.enqueue(scoped_ping, queue="theirs")
            mine = await app.enqueue(scoped_ping, queue="mine")
            await eventually(lambda: _is_done(mine), within=5)
            assert await status_of(other) == "queued"
    finally:
        await app.close()


@pytest.mark.asyncio
async def test_without_listen_notify_polling_picks_jobs_up(workers: MakeWorker) -> None:
    app = make_app(listen_notify=False, poll_interval=0.2)
    try:

        @app.job(name="wk.polled")
        async def polled(n: int) -> int:
            return n

        worker = workers(app)
        async with running(worker):
            # No session of its own: no LISTEN connection, no liveness lock.
            assert (
                await scalar("SELECT lock_key FROM soniq_workers WHERE id = %s", (worker.id,))
                is None
            )
            sessions = await scalar(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'soniq-worker' AND datname = current_database()"
            )
            assert sessions == 0
            for n in range(3):
                job_id = await app.enqueue(polled, n=n)
                await eventually(lambda job_id=job_id: _is_done(job_id), within=5)
    finally:
        await app.close()


@pytest.mark.asyncio
async def test_the_worker_registers_while_running_and_is_stopped_after(
    app: Soniq, workers: MakeWorker
) -> None:
    @app.job(name="wk.b_job")
    async def b_job() -> None:
        return None

    @app.job(name="wk.a_job")
    def a_job() -> None:
        return None

    worker = workers(app, 3)
    async with running(worker, concurrency=3, queues=["alpha", "beta"]) as task:
        [[host, pid, queues, names, concurrency, version, lock_key, stopped_at]] = await rows(
            "SELECT hostname, pid, queues, task_names, concurrency, version, lock_key, "
            "stopped_at FROM soniq_workers WHERE id = %s",
            (worker.id,),
        )
        assert (host, pid, concurrency, version) == (
            socket.gethostname(),
            os.getpid(),
            3,
            __version__,
        )
        assert queues == ["alpha", "beta"]
        assert sorted(names) == ["wk.a_job", "wk.b_job"]
        assert stopped_at is None
        assert lock_key is not None
        held = await scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objid = %s::oid AND objsubid = 2 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (lock_key,),
        )
        assert held == 1, "the worker's session holds its liveness lock"
        # The heartbeat keeps the row fresh.
        await execute(
            "UPDATE soniq_workers SET last_heartbeat_at = now() - interval '1 hour' WHERE id = %s",
            (worker.id,),
        )
        await eventually(lambda: _heartbeat_after(worker, time.time() - 5))
    assert task.result() is False, "no job ran"
    [[status, stopped]] = await rows(
        "SELECT status, stopped_at IS NOT NULL FROM soniq_workers WHERE id = %s", (worker.id,)
    )
    assert (status, stopped) == ("stopped", True)
    assert await scalar("SELECT count(*) FROM soniq_workers") == 1


@pytest.mark.asyncio
async def test_a_worker_presumed_dead_carries_on_under_a_new_id(
    app: Soniq, workers: MakeWorker
) -> None:
    seen: list[str | None] = []

    @app.job(name="wk.who")
    async def who(ctx: JobContext) -> None:
        seen.append(ctx.worker_id)

    worker = workers(app)
    async with running(worker):
        old = worker.id
        await execute("UPDATE soniq_workers SET status = 'dead' WHERE id = %s", (old,))
        await eventually(lambda: worker.id != old)
        new = worker.id
        await eventually(lambda: _status_is(new, "running"))
        assert await worker_status(old) == "dead"
        job_id = await app.enqueue(who)
        await eventually(lambda: _is_done(job_id), within=5)
        assert seen == [new]
    assert await worker_status(new) == "stopped"
    assert await worker_status(old) == "dead"


async def _status_is(worker_id: str, status: str) -> bool:
    return await worker_status(worker_id) == status


@pytest.mark.asyncio
async def test_a_running_worker_recovers_and_runs_the_job_of_a_dead_one(
    app: Soniq, workers: MakeWorker
) -> None:
    attempts: list[int] = []

    @app.job(name="wk.orphan")
    async def orphan(ctx: JobContext) -> str:
        attempts.append(ctx.attempt)
        return "finished"

    job_id = await app.enqueue(orphan)
    # A worker that claimed the job, then went silent an hour ago.
    backend = PostgresBackend(conninfo())
    try:
        dead = "00000000-0000-4000-8000-000000000001"
        info = WorkerInfo(dead, "gone", 1, None, ("wk.orphan",), 1, "0")
        await backend.register_worker(info, None)
        [claimed] = await backend.claim_jobs(dead, ["wk.orphan"], None, 1)
        assert claimed.id == job_id
        assert await backend.start_jobs(dead, [(job_id, 1)]) == 1
    finally:
        await backend.close()
    await execute(
        "UPDATE soniq_workers SET last_heartbeat_at = now() - interval '1 hour' WHERE id = %s",
        (dead,),
    )
    worker = workers(app)
    async with running(worker):
        await eventually(lambda: _is_done(job_id), within=10)
    assert attempts == [2], "the lost run counted as attempt 1"
    assert await worker_status(dead) == "dead"
    job = await app.get_job(job_id)
    assert job is not None and job.status is JobStatus.DONE and job.result == "finished"
    assert [error["error_type"] for error in job.errors] == ["soniq.WorkerLost"]


@pytest.mark.asyncio
async def test_failed_jobs_in_continuous_mode_are_retried_then_dead_lettered(
    app: Soniq, workers: MakeWorker
) -> None:
    @app.job(name="wk.bad", retries=2, retry_delay=0)
    async def bad(n: int) -> None:
        raise LookupError(f"missing {n}")

    ids = await app.enqueue_many(bad, [{"n": n} for n in range(5)])
    worker = workers(app, 4)
    async with running(worker, concurrency=4):
        await eventually(lambda: _count_dead_letters(5), within=10)
    for n, job_id in enumerate(ids):
        info = await app.get_job(job_id)
        assert info is not None and info.status is JobStatus.DEAD_LETTER
        assert [e["attempt"] for e in info.errors] == [1, 2, 3]
        assert {e["message"] for e in info.errors} == {f"missing {n}"}


async def _count_dead_letters(expected: int) -> bool:
    return bool(await scalar("SELECT count(*) FROM soniq_dead_letter_jobs") == expected)


def test_concurrency_must_be_positive() -> None:
    app = Soniq(database_url="postgresql://unused.invalid/none")
    worker = app.make_worker()

    async def main() -> Any:
        return await worker.run(concurrency=0)

    with pytest.raises(ValueError, match="concurrency"):
        asyncio.run(main())


@pytest.mark.asyncio
async def test_run_with_run_once_drains_and_returns(app: Soniq, workers: MakeWorker) -> None:
    @app.job(name="wk.once")
    async def once(n: int) -> int:
        return n

    await app.enqueue_many(once, [{"n": n} for n in range(3)])
    worker = workers(app)
    assert await bounded(worker.run(run_once=True)) is True
    assert await count_status("done") == 3
    assert await bounded(worker.run(run_once=True)) is False


@pytest.mark.asyncio
async def test_a_job_taken_back_from_a_live_worker_is_fenced_and_run_again(
    app: Soniq, workers: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker is presumed dead while its job runs: the job is recovered, charged (the
    lost run counts as attempt 1) and claimed again under the worker's new id. It runs alone
    (it was running when a worker died), so it waits for the stale run, which still runs in
    this process. When the stale run ends, its completion must not apply."""
    gates = [asyncio.Event(), asyncio.Event()]
    runs: list[tuple[str | None, int]] = []

    @app.job(name="wk.twice")
    async def twice(ctx: JobContext) -> str | None:
        gate = gates[len(runs)]
        runs.append((ctx.worker_id, ctx.attempt))
        await gate.wait()
        return ctx.worker_id

    def warned() -> bool:
        return any("taken back" in record.getMessage() for record in caplog.records)

    job_id = await app.enqueue(twice)
    worker = workers(app)
    async with running(worker):
        try:
            await eventually(lambda: len(runs) == 1)
            first_id = worker.id
            # Its start is recorded, so recovery knows it was running.
            await eventually(lambda: _started(job_id))
            await execute("UPDATE soniq_workers SET status = 'dead' WHERE id = %s", (first_id,))
            await eventually(lambda: worker.id != first_id, within=10)
            second_id = worker.id
            # Recovered and claimed again, but not started beside the stale run.
            await eventually(lambda: _held_by(job_id, second_id), within=10)
            assert runs == [(first_id, 1)]

            gates[0].set()  # the stale run ends: its completion is refused
            await eventually(warned)
            await eventually(lambda: len(runs) == 2, within=10)
            assert runs == [(first_id, 1), (second_id, 2)]
            assert await status_of(job_id) == "processing"
            gates[1].set()
            await eventually(lambda: _is_done(job_id))
        finally:
            for gate in gates:
                gate.set()
    info = await app.get_job(job_id)
    assert info is not None and info.status is JobStatus.DONE
    assert info.result == second_id
    assert [(e["error_type"], e["worker_id"]) for e in info.errors] == [
        ("soniq.WorkerLost", first_id)
    ]


@pytest.mark.asyncio
async def test_a_worker_runs_again_after_a_stop_and_after_a_cancel(
    app: Soniq, workers: MakeWorker
) -> None:
    @app.job(name="wk.again")
    async def again(n: int) -> int:
        return n

    worker = workers(app, 2)
    for round_number in range(3):
        job_id = await app.enqueue(again, n=round_number)
        task = asyncio.create_task(worker.run(concurrency=2))
        await eventually(lambda job_id=job_id: _is_done(job_id), within=20)
        if round_number == 1:
            task.cancel()
            await bounded(asyncio.gather(task, return_exceptions=True))
        else:
            worker.stop()
            assert await bounded(task) is True
        assert await worker_status(worker.id) == "stopped"


async def _is_done(job_id: str) -> bool:
    return await status_of(job_id) == "done"

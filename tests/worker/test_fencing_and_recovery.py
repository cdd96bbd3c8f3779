"""The backend's worker operations on PostgreSQL: fenced writes, recovery of the jobs of dead
workers, liveness locks, release and pruning. No worker runs here: each test plays the workers
itself through a :class:`PostgresBackend`."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from soniq import JobStatus, Soniq
from soniq.backends.postgres import PostgresBackend
from soniq.core.records import ClaimedJob, WorkerInfo
from tests.helpers import conninfo
from tests.worker.conftest import eventually, execute, rows, scalar, worker_status

pytestmark = [pytest.mark.django_db(transaction=True)]

TASK = "wk.fenced"


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[PostgresBackend]:
    opened = PostgresBackend(conninfo())
    yield opened
    await opened.close()


@pytest.fixture
def producer(app: Soniq) -> Soniq:
    @app.job(name=TASK)
    async def fenced(n: int = 0) -> None:
        return None

    return app


def new_id() -> str:
    return str(uuid.uuid4())


async def register(backend: PostgresBackend, lock_key: int | None = None) -> str:
    worker_id = new_id()
    info = WorkerInfo(
        id=worker_id,
        hostname="test-host",
        pid=os.getpid(),
        queues=None,
        task_names=(TASK,),
        concurrency=2,
        version="test",
    )
    await backend.register_worker(info, lock_key)
    return worker_id


async def claim_one(backend: PostgresBackend, worker_id: str) -> ClaimedJob:
    """Claim one job and record its start, as a worker does: the job is running."""
    [job] = await backend.claim_jobs(worker_id, [TASK], None, 1)
    assert await backend.start_jobs(worker_id, [(job.id, job.attempt)]) == 1
    return job


def error(attempt: int, worker_id: str, message: str = "failed") -> dict[str, Any]:
    return {
        "attempt": attempt,
        "error_type": "builtins.ValueError",
        "message": message,
        "traceback": "",
        "failed_at": "2030-01-01T00:00:00+00:00",
        "worker_id": worker_id,
    }


async def job_row(job_id: str) -> dict[str, Any]:
    [row] = await rows(
        "SELECT status, attempts, worker_id::text, worker_losses, errors, result, started_at "
        "FROM soniq_jobs WHERE id = %s",
        (job_id,),
    )
    keys = ("status", "attempts", "worker_id", "worker_losses", "errors", "result", "started_at")
    return dict(zip(keys, row, strict=True))


async def age_heartbeat(worker_id: str, interval: str) -> None:
    await execute(
        "UPDATE soniq_workers SET last_heartbeat_at = now() - %s::interval WHERE id = %s",
        (interval, worker_id),
    )


async def recover(backend: PostgresBackend, **overrides: Any) -> Any:
    options = {"heartbeat_timeout": 60, "lock_grace": 1, "max_losses": 3, **overrides}
    return await backend.recover_stale_workers(**options)


@pytest.mark.asyncio
async def test_finishing_writes_need_the_claiming_worker_and_attempt(
    producer: Soniq, backend: PostgresBackend
) -> None:
    job_id = await producer.enqueue(TASK, args={"n": 1})
    a, b = await register(backend), await register(backend)
    job = await claim_one(backend, a)
    assert (job.id, job.attempt) == (job_id, 1)

    assert await backend.complete_jobs(b, [(job_id, 1, '"wrong worker"')]) == 0
    assert await backend.complete_jobs(a, [(job_id, 2, '"wrong attempt"')]) == 0
    assert await backend.retry_job(b, job_id, 1, 0, error(1, b)) is False
    assert await backend.retry_job(a, job_id, 2, 0, error(2, a)) is False
    assert await backend.dead_letter_job(b, job_id, 1, error(1, b), "max_attempts") is False
    assert await backend.dead_letter_job(a, job_id, 0, error(0, a), "max_attempts") is False
    assert await backend.release_jobs(b, [(job_id, 1)]) == 0
    assert await backend.release_jobs(a, [(job_id, 2)]) == 0
    unchanged = await job_row(job_id)
    assert (unchanged["status"], unchanged["attempts"], unchanged["worker_id"]) == (
        "processing",
        1,
        a,
    )
    assert unchanged["errors"] == [] and unchanged["result"] is None
    assert await rows("SELECT id FROM soniq_dead_letter_jobs") == []

    assert await backend.complete_jobs(a, [(job_id, 1, '{"ok": true}')]) == 1
    done = await job_row(job_id)
    assert (done["status"], done["result"]) == ("done", {"ok": True})
    # Finished: no later write of any kind applies, not even the owner's.
    assert await backend.complete_jobs(a, [(job_id, 1, '"again"')]) == 0
    assert await backend.retry_job(a, job_id, 1, 0, error(1, a)) is False
    assert await backend.release_jobs(a, [(job_id, 1)]) == 0
    assert (await job_row(job_id))["result"] == {"ok": True}


@pytest.mark.asyncio
async def test_a_completion_batch_applies_only_its_fenced_rows(
    producer: Soniq, backend: PostgresBackend
) -> None:
    await producer.enqueue_many(TASK, [{"n": n} for n in range(3)])
    a = await register(backend)
    jobs = await backend.claim_jobs(a, [TASK], None, 10)
    assert len(jobs) == 3 and {job.attempt for job in jobs} == {1}
    batch = [(jobs[0].id, 1, "1"), (jobs[1].id, 2, "2"), (jobs[2].id, 1, None)]
    assert await backend.complete_jobs(a, batch) == 2
    states = [(await job_row(job.id))["status"] for job in jobs]
    assert states == ["done", "processing", "done"]
    assert (await job_row(jobs[0].id))["result"] == 1
    assert (await job_row(jobs[2].id))["result"] is None


@pytest.mark.asyncio
async def test_retry_requeues_after_the_delay_with_the_error_appended(
    producer: Soniq, backend: PostgresBackend
) -> None:
    job_id = await producer.enqueue(TASK)
    a = await register(backend)
    await claim_one(backend, a)
    assert await backend.retry_job(a, job_id, 1, 3600, error(1, a, "first")) is True
    row = await job_row(job_id)
    assert (row["status"], row["attempts"], row["worker_id"]) == ("queued", 1, None)
    assert row["errors"] == [error(1, a, "first")]
    delay = await scalar(
        "SELECT extract(epoch FROM scheduled_at - now()) FROM soniq_jobs WHERE id = %s",
        (job_id,),
    )
    assert 3500 < float(delay) <= 3600
    assert await backend.claim_jobs(a, [TASK], None, 1) == [], "not due yet"
    await execute("UPDATE soniq_jobs SET scheduled_at = now() WHERE id = %s", (job_id,))
    again = await claim_one(backend, a)
    assert again.attempt == 2


@pytest.mark.asyncio
async def test_dead_lettering_moves_the_row_with_every_error(
    producer: Soniq, backend: PostgresBackend
) -> None:
    job_id = await producer.enqueue(TASK, args={"n": 5}, priority=7, queue="q1")
    a = await register(backend)
    await claim_one(backend, a)
    assert await backend.retry_job(a, job_id, 1, 0, error(1, a, "first")) is True
    await claim_one(backend, a)
    assert await backend.dead_letter_job(a, job_id, 2, error(2, a, "last"), "max_attempts")
    assert await rows("SELECT id FROM soniq_jobs") == []
    [[reason, worker_id, attempts, errors]] = await rows(
        "SELECT reason, worker_id::text, attempts, errors FROM soniq_dead_letter_jobs"
    )
    assert (reason, worker_id, attempts) == ("max_attempts", a, 2)
    assert errors == [error(1, a, "first"), error(2, a, "last")]
    info = await producer.get_job(job_id)
    assert info is not None and info.status is JobStatus.DEAD_LETTER
    assert (info.args, info.priority, info.queue) == ({"n": 5}, 7, "q1")
    # A second move of the same job finds nothing to move.
    assert not await backend.dead_letter_job(a, job_id, 2, error(2, a), "max_attempts")


@pytest.mark.asyncio
async def test_a_dead_workers_running_job_is_charged_and_fenced_from_it(
    producer: Soniq, backend: PostgresBackend
) -> None:
    job_id = await producer.enqueue(TASK)
    scheduled = await scalar("SELECT scheduled_at FROM soniq_jobs WHERE id = %s", (job_id,))
    dead, alive = await register(backend), await register(backend)
    await claim_one(backend, dead)
    await age_heartbeat(dead, "1 hour")

    report = await recover(backend)
    assert report.dead_workers == (dead,)
    assert (report.requeued, report.dead_lettered) == (1, 0)
    row = await job_row(job_id)
    assert (row["status"], row["attempts"], row["worker_id"], row["worker_losses"]) == (
        "queued",
        1,
        None,
        1,
    ), "the lost run counts as an attempt"
    assert row["started_at"] is None
    assert await scalar("SELECT suspicion FROM soniq_jobs WHERE id = %s", (job_id,)) == 2
    assert await scalar("SELECT scheduled_at FROM soniq_jobs WHERE id = %s", (job_id,)) == (
        scheduled
    ), "it keeps its place in the queue"
    [lost] = row["errors"]
    assert lost["error_type"] == "soniq.WorkerLost"
    assert (lost["attempt"], lost["worker_id"]) == (1, dead)
    assert lost["message"] and lost["failed_at"]
    assert await worker_status(dead) == "dead"
    assert await worker_status(alive) == "running"
    assert await scalar("SELECT stopped_at IS NOT NULL FROM soniq_workers WHERE id = %s", (dead,))

    # The presumed-dead worker was alive after all: nothing it writes applies.
    assert await backend.complete_jobs(dead, [(job_id, 1, '"late"')]) == 0
    assert (await job_row(job_id))["status"] == "queued"
    # Its heartbeat leaves the dead row as it was: no heartbeat later than its death.
    assert await backend.heartbeat(dead) == "dead"
    assert await scalar(
        "SELECT last_heartbeat_at <= stopped_at FROM soniq_workers WHERE id = %s", (dead,)
    )

    # Its successor runs the next attempt, alone; the dead worker's writes stay fenced off.
    taken = await claim_one(backend, alive)
    assert (taken.attempt, taken.runs_alone) == (2, True)
    assert await backend.complete_jobs(dead, [(job_id, 1, '"late"')]) == 0
    assert await backend.retry_job(dead, job_id, 1, 0, error(1, dead)) is False
    assert await backend.release_jobs(dead, [(job_id, 1)]) == 0
    assert (await job_row(job_id))["worker_id"] == alive
    assert await backend.complete_jobs(alive, [(job_id, 2, '"right"')]) == 1
    assert (await job_row(job_id))["result"] == "right"

    # Deregistering cannot bring a dead worker back to "stopped", and nothing is left to do.
    await backend.deregister_worker(dead)
    assert await worker_status(dead) == "dead"
    again = await recover(backend)
    assert (again.dead_workers, again.requeued, again.dead_lettered) == ((), 0, 0)


@pytest.mark.asyncio
async def test_a_job_that_lost_max_losses_workers_is_dead_lettered(
    producer: Soniq, backend: PostgresBackend
) -> None:
    unlucky = await producer.enqueue(TASK, args={"n": 1})
    lucky = await producer.enqueue(TASK, args={"n": 2})
    dead = await register(backend)
    claimed = await backend.claim_jobs(dead, [TASK], None, 2)
    assert await backend.start_jobs(dead, [(job.id, job.attempt) for job in claimed]) == 2
    await execute("UPDATE soniq_jobs SET worker_losses = 2 WHERE id = %s", (unlucky,))
    await age_heartbeat(dead, "1 hour")

    report = await recover(backend, max_losses=3)
    assert (report.dead_workers, report.requeued, report.dead_lettered) == ((dead,), 1, 1)
    info = await producer.get_job(unlucky)
    assert info is not None and info.status is JobStatus.DEAD_LETTER
    assert info.dead_letter_reason == "worker_lost"
    assert info.attempts == 1
    assert [e["error_type"] for e in info.errors] == ["soniq.WorkerLost"]
    requeued = await job_row(lucky)
    assert (requeued["status"], requeued["worker_losses"]) == ("queued", 1)


@pytest.mark.asyncio
async def test_a_held_liveness_lock_keeps_a_silent_worker_alive_until_its_session_closes(
    producer: Soniq, backend: PostgresBackend
) -> None:
    job_id = await producer.enqueue(TASK)
    session = await backend.open_session(listen=False)
    try:
        assert session.lock_key is not None
        worker = await register(backend, session.lock_key)
        await claim_one(backend, worker)
        # Ten seconds without a heartbeat: beyond the lock grace, within the timeout.
        await age_heartbeat(worker, "10 seconds")
        report = await recover(backend, heartbeat_timeout=60, lock_grace=1)
        assert report.dead_workers == () and report.requeued == 0
        assert await worker_status(worker) == "running"
    finally:
        await session.close()

    # The lock is gone (PostgreSQL drops it as the session ends); within the grace period the
    # worker may still be re-taking it, so it is not dead yet.
    async def lock_released() -> bool:
        count = await scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s::oid "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (session.lock_key,),
        )
        return bool(count == 0)

    await eventually(lock_released, within=5)
    still = await recover(backend, heartbeat_timeout=60, lock_grace=30)
    assert still.dead_workers == ()
    # Past the grace: dead at once, long before the heartbeat timeout.
    report = await recover(backend, heartbeat_timeout=60, lock_grace=1)
    assert report.dead_workers == (worker,)
    assert report.requeued == 1
    assert (await job_row(job_id))["status"] == "queued"


@pytest.mark.asyncio
async def test_a_fresh_heartbeat_without_a_lock_key_is_alive(
    producer: Soniq, backend: PostgresBackend
) -> None:
    await producer.enqueue(TASK)
    worker = await register(backend, lock_key=None)
    await claim_one(backend, worker)
    await age_heartbeat(worker, "30 seconds")
    report = await recover(backend, heartbeat_timeout=60, lock_grace=1)
    assert report.dead_workers == () and report.requeued == 0
    await age_heartbeat(worker, "61 seconds")
    report = await recover(backend, heartbeat_timeout=60, lock_grace=1)
    assert report.dead_workers == (worker,) and report.requeued == 1


@pytest.mark.asyncio
async def test_jobs_held_by_stopped_or_unknown_workers_are_recovered(
    producer: Soniq, backend: PostgresBackend
) -> None:
    by_stopped = await producer.enqueue(TASK, args={"n": 1})
    by_unknown = await producer.enqueue(TASK, args={"n": 2})
    by_running = await producer.enqueue(TASK, args={"n": 3})
    stopped, running = await register(backend), await register(backend)
    assert (await claim_one(backend, stopped)).id == by_stopped
    assert (await claim_one(backend, new_id())).id == by_unknown
    assert (await claim_one(backend, running)).id == by_running
    await backend.deregister_worker(stopped)
    assert await worker_status(stopped) == "stopped"

    report = await recover(backend)
    assert report.dead_workers == ()
    assert (report.requeued, report.dead_lettered) == (2, 0)
    assert (await job_row(by_stopped))["status"] == "queued"
    assert (await job_row(by_unknown))["status"] == "queued"
    assert (await job_row(by_running))["status"] == "processing"
    assert await worker_status(stopped) == "stopped"


@pytest.mark.asyncio
async def test_release_puts_a_job_back_without_charging_the_attempt(
    producer: Soniq, backend: PostgresBackend
) -> None:
    job_id = await producer.enqueue(TASK)
    a = await register(backend)
    await claim_one(backend, a)
    assert await backend.release_jobs(a, []) == 0
    assert await backend.release_jobs(a, [(job_id, 1)]) == 1
    row = await job_row(job_id)
    assert (row["status"], row["attempts"], row["worker_id"], row["started_at"]) == (
        "queued",
        0,
        None,
        None,
    )
    assert row["errors"] == [] and row["worker_losses"] == 0
    assert (await claim_one(backend, a)).attempt == 1


@pytest.mark.asyncio
async def test_release_strays_requeues_only_old_jobs_the_worker_is_not_running(
    producer: Soniq, backend: PostgresBackend
) -> None:
    running, stray = await producer.enqueue_many(TASK, [{"n": 1}, {"n": 2}])
    a, b = await register(backend), await register(backend)
    assert len(await backend.claim_jobs(a, [TASK], None, 2)) == 2
    await execute("UPDATE soniq_jobs SET claimed_at = now() - interval '1 hour'")
    fresh = await producer.enqueue(TASK, args={"n": 3})
    others = await producer.enqueue(TASK, args={"n": 4})
    assert (await claim_one(backend, a)).id == fresh
    assert (await claim_one(backend, b)).id == others
    await execute(
        "UPDATE soniq_jobs SET claimed_at = now() - interval '1 hour' WHERE id = %s", (others,)
    )

    assert await backend.release_strays(a, [running], older_than=5) == 1
    assert (await job_row(stray))["status"] == "queued"
    assert (await job_row(stray))["attempts"] == 0
    assert (await job_row(running))["status"] == "processing"
    assert (await job_row(fresh))["status"] == "processing", "just claimed: not a stray yet"
    assert (await job_row(others))["worker_id"] == b, "another worker's job is not touched"


@pytest.mark.asyncio
async def test_prune_deletes_only_finished_jobs_older_than_the_retention(
    producer: Soniq, backend: PostgresBackend
) -> None:
    labels = ["old_done", "new_done", "old_cancelled", "new_cancelled", "queued", "processing"]
    ids = dict(zip(labels, await producer.enqueue_many(TASK, [{} for _ in labels]), strict=True))
    plan = {
        "old_done": ("done", "2 hours"),
        "new_done": ("done", "10 minutes"),
        "old_cancelled": ("cancelled", "3 hours"),
        "new_cancelled": ("cancelled", "1 minute"),
        "processing": ("processing", None),
    }
    for label, (status, age) in plan.items():
        await execute(
            "UPDATE soniq_jobs SET status = %s, created_at = now() - interval '1 day', "
            "finished_at = now() - %s::interval WHERE id = %s",
            (status, age or "0 seconds", ids[label]),
        )
    await execute("UPDATE soniq_jobs SET finished_at = NULL WHERE status = 'processing'")
    await execute(
        "UPDATE soniq_jobs SET created_at = now() - interval '1 day' WHERE id = %s",
        (ids["queued"],),
    )
    old_stopped, new_stopped, running = [await register(backend) for _ in range(3)]
    old_dead = await register(backend)
    await execute(
        "UPDATE soniq_workers SET status = 'stopped', stopped_at = now() - interval '2 hours' "
        "WHERE id = %s",
        (old_stopped,),
    )
    await execute(
        "UPDATE soniq_workers SET status = 'dead', stopped_at = now() - interval '2 hours' "
        "WHERE id = %s",
        (old_dead,),
    )
    await backend.deregister_worker(new_stopped)

    assert await backend.prune(retention=3600) == 2
    left = {str(row[0]) for row in await rows("SELECT id FROM soniq_jobs")}
    assert left == {ids[label] for label in labels} - {ids["old_done"], ids["old_cancelled"]}
    workers = {str(row[0]) for row in await rows("SELECT id FROM soniq_workers")}
    assert workers == {new_stopped, running}
    assert await backend.prune(retention=3600) == 0


@pytest.mark.asyncio
async def test_prune_works_through_batches(producer: Soniq, backend: PostgresBackend) -> None:
    await producer.enqueue_many(TASK, [{"n": n} for n in range(5)])
    await execute("UPDATE soniq_jobs SET status = 'done', finished_at = now() - interval '1 hour'")
    assert await backend.prune(retention=60, batch=2) == 5
    assert await rows("SELECT id FROM soniq_jobs") == []


@pytest.mark.asyncio
async def test_register_heartbeat_and_deregister(backend: PostgresBackend) -> None:
    session = await backend.open_session(listen=False)
    try:
        worker = await register(backend, session.lock_key)
        [[host, pid, queues, names, concurrency, version, lock_key, status]] = await rows(
            "SELECT hostname, pid, queues, task_names, concurrency, version, lock_key, status "
            "FROM soniq_workers WHERE id = %s",
            (worker,),
        )
        assert (host, pid, queues, names, concurrency, version) == (
            "test-host",
            os.getpid(),
            None,
            [TASK],
            2,
            "test",
        )
        assert (lock_key, status) == (session.lock_key, "running")
        await age_heartbeat(worker, "1 minute")
        assert await backend.heartbeat(worker) == "running"
        age = await scalar(
            "SELECT extract(epoch FROM now() - last_heartbeat_at) FROM soniq_workers WHERE id = %s",
            (worker,),
        )
        assert float(age) < 5
        assert await backend.heartbeat(new_id()) is None
        await backend.deregister_worker(worker)
        assert await worker_status(worker) == "stopped"
        assert await backend.heartbeat(worker) == "stopped"
    finally:
        await session.close()


@pytest.mark.asyncio
async def test_two_sessions_never_share_a_liveness_lock(backend: PostgresBackend) -> None:
    first = await backend.open_session(listen=False)
    try:
        second = await backend.open_session(listen=False, lock_key=first.lock_key)
        try:
            assert second.lock_key is not None
            assert second.lock_key != first.lock_key, "the held key was not taken twice"
        finally:
            await second.close()
    finally:
        await first.close()

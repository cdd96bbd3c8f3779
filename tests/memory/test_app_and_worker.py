"""MemoryBackend behind a Soniq app, with a real soniq.worker.Worker: enqueue shapes, dedup,
priorities, schedules on the backend's clock, retries, dead letters, results, recovery of a
silent worker, shutdown release, and in-process wake-up. Waits poll conditions with deadlines."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from soniq import InvalidConnectionError, InvalidJobIdError, JobStatus, Soniq
from soniq.backends.memory import MemoryBackend
from soniq.core.records import WorkerInfo
from soniq.worker import Worker
from tests.memory.conftest import FakeClock, bounded, eventually, memory_app, running


@dataclass
class Jobs:
    app: Soniq
    backend: MemoryBackend
    ran: list[Any] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    add: Any = None
    record: Any = None
    fail: Any = None
    flaky: Any = None
    hang: Any = None

    def worker(self) -> Worker:
        return Worker(self.backend, self.app.registry, self.app.settings)


def build_jobs(backend: MemoryBackend, **overrides: Any) -> Jobs:
    app = memory_app(backend, **overrides)
    jobs = Jobs(app, backend)

    @app.job(name="mem.add")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.job(name="mem.record")
    def record(n: Any) -> None:
        jobs.ran.append(n)

    @app.job(name="mem.fail", retries=2)
    def fail(message: str) -> None:
        raise ValueError(message)

    @app.job(name="mem.flaky", retries=3, retry_delay=60)
    def flaky() -> str:
        jobs.ran.append("flaky")
        if len(jobs.ran) < 2:
            raise RuntimeError("not yet")
        return "finally"

    @app.job(name="mem.hang")
    async def hang() -> None:
        jobs.ran.append("hang")
        await asyncio.Event().wait()

    jobs.add, jobs.record, jobs.fail, jobs.flaky, jobs.hang = add, record, fail, flaky, hang
    return jobs


@pytest.fixture
def jobs(backend: MemoryBackend) -> Iterator[Jobs]:
    built = build_jobs(backend)
    yield built
    built.release.set()


def status(backend: MemoryBackend, job_id: str) -> JobStatus | None:
    info = backend.get_job_sync(job_id)
    return info.status if info is not None else None


# -- enqueueing through the app ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_enqueue_shapes(jobs: Jobs, clock: FakeClock) -> None:
    app = jobs.app
    by_function = await app.enqueue(jobs.add, a=1, b=2)
    by_name = await app.enqueue("mem.add", args={"a": 3, "b": 4}, priority=5, queue="fast")
    sync_by_name = app.enqueue_sync("mem.add", args={"a": 0, "b": 0})
    via_job = jobs.add.enqueue(a=5, b=6)
    via_job_async = await jobs.add.aenqueue(a=7, b=8)
    many = await app.enqueue_many(jobs.add, [{"a": n, "b": n} for n in range(3)], queue="bulk")
    many_sync = app.enqueue_many_sync("mem.add", [{"a": 9, "b": 9}])
    at = clock.now + timedelta(hours=1)
    scheduled = await app.schedule(jobs.add, at, a=1, b=1)
    scheduled_sync = app.schedule_sync("mem.add", at, args={"a": 2, "b": 2})

    ids = [by_function, by_name, sync_by_name, via_job, via_job_async, *many, *many_sync]
    ids += [scheduled, scheduled_sync]
    assert len(set(ids)) == len(ids) == 11
    assert [job.id for job in jobs.backend.jobs()] == ids, "stored in enqueue order"
    info = await app.get_job(by_name)
    assert info is not None
    assert (info.task_name, info.args, info.priority, info.queue) == (
        "mem.add",
        {"a": 3, "b": 4},
        5,
        "fast",
    )
    assert info.max_attempts == 4, "three retries by default"
    assert [(await app.get_job(job_id)).args["a"] for job_id in many] == [0, 1, 2]  # type: ignore[union-attr]
    assert {(await app.get_job(job_id)).queue for job_id in many} == {"bulk"}  # type: ignore[union-attr]
    assert app.get_job_sync(scheduled_sync).scheduled_at == at  # type: ignore[union-attr]
    assert await app.get_job(uuid.UUID(by_function)) is not None
    assert await app.get_job(str(uuid.uuid4())) is None
    with pytest.raises(InvalidJobIdError):
        await app.get_job("nope")


@pytest.mark.asyncio
async def test_a_connection_is_refused_through_the_app(jobs: Jobs) -> None:
    with pytest.raises(InvalidConnectionError, match="memory backend"):
        jobs.app.enqueue_sync(jobs.add, a=1, b=2, connection=object())
    with pytest.raises(InvalidConnectionError, match="memory backend"):
        await jobs.app.enqueue(jobs.add, a=1, b=2, connection=object())
    assert jobs.backend.jobs() == []


@pytest.mark.asyncio
async def test_dedup_returns_the_existing_id_until_the_job_ran(jobs: Jobs) -> None:
    app = jobs.app
    first = await app.enqueue(jobs.record, n=1, dedup_key="nightly")
    assert await app.enqueue(jobs.record, n=2, dedup_key="nightly") == first
    assert app.enqueue_sync("mem.record", args={"n": 3}, dedup_key="nightly") == first
    unique = await app.enqueue(jobs.record, n=10, unique=True)
    assert await app.enqueue(jobs.record, n=10, unique=True) == unique
    assert await app.enqueue(jobs.record, n=11, unique=True) != unique, "other arguments"
    assert len(jobs.backend.jobs()) == 3

    assert await bounded(jobs.worker().run_once())
    assert sorted(jobs.ran) == [1, 10, 11]
    again = await app.enqueue(jobs.record, n=4, dedup_key="nightly")
    assert again != first, "the holder is done: a new job"


# -- running with run_once --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_results_are_reported_by_get_job(jobs: Jobs, clock: FakeClock) -> None:
    job_id = await jobs.add.aenqueue(a=2, b=3)
    worker = jobs.worker()
    assert await bounded(worker.run_once()) is True
    info = await jobs.app.get_job(job_id)
    assert info is not None
    assert (info.status, info.result, info.attempts, info.errors) == (JobStatus.DONE, 5, 1, [])
    assert (info.worker_id, info.started_at, info.finished_at) == (worker.id, clock.now, clock.now)
    assert await bounded(worker.run_once()) is False, "nothing left"
    assert jobs.backend.worker_status(worker.id) == "stopped"


@pytest.mark.asyncio
async def test_priority_then_schedule_order(jobs: Jobs, clock: FakeClock) -> None:
    app = jobs.app
    await app.enqueue(jobs.record, n="p50", priority=50)
    await app.enqueue(jobs.record, n="p10-later", priority=10, scheduled_at=clock.now)
    earlier = clock.now - timedelta(minutes=5)
    await app.enqueue(jobs.record, n="p10-earlier", priority=10, scheduled_at=earlier)
    await app.enqueue(jobs.record, n="default")
    await app.enqueue(jobs.record, n="p1", priority=1)
    assert await bounded(jobs.worker().run_once()) is True
    assert jobs.ran == ["p1", "p10-earlier", "p10-later", "p50", "default"]


@pytest.mark.asyncio
async def test_a_future_job_waits_for_the_clock(jobs: Jobs, clock: FakeClock) -> None:
    job_id = await jobs.app.schedule(jobs.record, clock.now + timedelta(minutes=10), n="later")
    worker = jobs.worker()
    assert await bounded(worker.run_once()) is False
    clock.advance(599)
    assert await bounded(worker.run_once()) is False
    assert status(jobs.backend, job_id) is JobStatus.QUEUED
    clock.advance(1)
    assert await bounded(worker.run_once()) is True
    assert jobs.ran == ["later"]
    assert status(jobs.backend, job_id) is JobStatus.DONE


@pytest.mark.asyncio
async def test_retries_then_a_dead_letter_with_every_error(jobs: Jobs) -> None:
    job_id = await jobs.fail.aenqueue(message="boom")
    worker = jobs.worker()
    assert await bounded(worker.run_once()) is True
    info = await jobs.app.get_job(job_id)
    assert info is not None
    assert (info.status, info.dead_letter_reason, info.attempts) == (
        JobStatus.DEAD_LETTER,
        "max_attempts",
        3,
    )
    assert [e["attempt"] for e in info.errors] == [1, 2, 3]
    assert {e["error_type"] for e in info.errors} == {"builtins.ValueError"}
    assert {e["message"] for e in info.errors} == {"boom"}
    assert {e["worker_id"] for e in info.errors} == {worker.id}
    assert all("Traceback" in e["traceback"] for e in info.errors)
    assert jobs.backend.jobs() == [] and jobs.backend.dead_letters() == [info]


@pytest.mark.asyncio
async def test_a_retry_delay_runs_on_the_backends_clock(jobs: Jobs, clock: FakeClock) -> None:
    job_id = await jobs.flaky.aenqueue()
    worker = jobs.worker()
    assert await bounded(worker.run_once()) is True
    info = await jobs.app.get_job(job_id)
    assert info is not None
    assert (info.status, info.attempts, len(info.errors)) == (JobStatus.QUEUED, 1, 1)
    assert info.scheduled_at == clock.now + timedelta(seconds=60)
    assert await bounded(worker.run_once()) is False
    clock.advance(60)
    assert await bounded(worker.run_once()) is True
    done = await jobs.app.get_job(job_id)
    assert done is not None
    assert (done.status, done.result, done.attempts) == (JobStatus.DONE, "finally", 2)
    assert [e["error_type"] for e in done.errors] == ["builtins.RuntimeError"]


@pytest.mark.asyncio
async def test_run_once_honours_queues_and_max_jobs(jobs: Jobs) -> None:
    await jobs.app.enqueue(jobs.record, n="a1", queue="a")
    await jobs.app.enqueue(jobs.record, n="b1", queue="b")
    await jobs.app.enqueue(jobs.record, n="a2", queue="a")
    worker = jobs.worker()
    assert await bounded(worker.run_once(queues=["a"], max_jobs=1)) is True
    assert jobs.ran == ["a1"]
    assert await bounded(worker.run_once(queues=["a"])) is True
    assert jobs.ran == ["a1", "a2"]
    assert await bounded(worker.run_once()) is True
    assert jobs.ran == ["a1", "a2", "b1"]


# -- running continuously ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_run_and_stop(jobs: Jobs) -> None:
    worker = jobs.worker()
    async with running(worker, concurrency=3) as task:
        ids = await jobs.app.enqueue_many(jobs.add, [{"a": n, "b": 1} for n in range(20)])
        failing = await jobs.fail.aenqueue(message="no")

        def finished() -> bool:
            return all(status(jobs.backend, job_id) is JobStatus.DONE for job_id in ids)

        await eventually(finished)
        await eventually(lambda: status(jobs.backend, failing) is JobStatus.DEAD_LETTER)
    assert task.result() is True
    results = [(await jobs.app.get_job(job_id)).result for job_id in ids]  # type: ignore[union-attr]
    assert results == [n + 1 for n in range(20)]
    assert jobs.backend.worker_status(worker.id) == "stopped"


@pytest.mark.asyncio
async def test_on_insert_wakes_a_worker_in_the_same_process(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook a later change can use: with a 60 s poll interval the job still runs at once."""
    backend = MemoryBackend(clock=clock)
    jobs = build_jobs(backend, poll_interval=60)
    worker = jobs.worker()
    claims: list[int] = []
    claim = backend.claim_jobs

    async def counted(*args: Any, **kwargs: Any) -> Any:
        found = await claim(*args, **kwargs)
        claims.append(len(found))
        return found

    monkeypatch.setattr(backend, "claim_jobs", counted)
    loop = asyncio.get_running_loop()
    backend.on_insert.append(lambda queue: loop.call_soon_threadsafe(worker._wake.set))
    async with running(worker, concurrency=1):
        # The first claim found nothing: the worker is now in its 60 s wait.
        await eventually(lambda: claims == [0])
        job_id = await jobs.add.aenqueue(a=1, b=1)
        await eventually(lambda: status(backend, job_id) is JobStatus.DONE, within=5)
        from_thread = await asyncio.to_thread(jobs.add.enqueue, a=2, b=2)
        await eventually(lambda: status(backend, from_thread) is JobStatus.DONE, within=5)
    assert claims[:1] == [0] and sum(claims) == 2


@pytest.mark.asyncio
async def test_stopping_puts_an_unfinished_job_back_uncharged(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock)
    jobs = build_jobs(backend, shutdown_timeout=0.1)
    job_id = await jobs.hang.aenqueue()
    worker = jobs.worker()
    async with running(worker, concurrency=1):
        await eventually(lambda: status(backend, job_id) is JobStatus.PROCESSING)
        await eventually(lambda: jobs.ran == ["hang"])
    info = await jobs.app.get_job(job_id)
    assert info is not None
    assert (info.status, info.attempts, info.worker_id, info.errors) == (
        JobStatus.QUEUED,
        0,
        None,
        [],
    )


@pytest.mark.asyncio
async def test_a_running_worker_recovers_the_job_of_a_silent_one(
    jobs: Jobs, clock: FakeClock
) -> None:
    job_id = await jobs.add.aenqueue(a=20, b=22)
    ghost = str(uuid.uuid4())
    info = WorkerInfo(ghost, "elsewhere", os.getpid(), None, ("mem.add",), 1, "test")
    await jobs.backend.register_worker(info, None)
    [claimed] = await jobs.backend.claim_jobs(ghost, ["mem.add"], None, 1)
    assert claimed.id == job_id
    assert await jobs.backend.start_jobs(ghost, [(job_id, 1)]) == 1  # it was running
    clock.advance(31)  # past HEARTBEAT_TIMEOUT (30 s) without a heartbeat from the ghost

    worker = jobs.worker()
    async with running(worker, concurrency=1):
        await eventually(lambda: status(jobs.backend, job_id) is JobStatus.DONE)
    done = await jobs.app.get_job(job_id)
    assert done is not None
    assert (done.result, done.attempts, done.worker_id) == (42, 2, worker.id), "lost run counted"
    [lost] = done.errors
    assert (lost["error_type"], lost["worker_id"], lost["attempt"]) == (
        "soniq.WorkerLost",
        ghost,
        1,
    )
    assert jobs.backend.worker_status(ghost) == "dead"
    # The ghost comes back: its late completion is fenced off.
    assert await jobs.backend.complete_jobs(ghost, [(job_id, 1, '"late"')]) == 0
    assert await jobs.backend.heartbeat(ghost) == "dead"


@pytest.mark.asyncio
async def test_a_worker_presumed_dead_carries_on_under_a_new_identity(
    jobs: Jobs, clock: FakeClock
) -> None:
    worker = jobs.worker()
    async with running(worker, concurrency=1):
        first = worker.id
        clock.advance(31)
        # Another process's recovery pass, run before this worker's next heartbeat.
        report = await jobs.backend.recover_stale_workers(
            heartbeat_timeout=30, lock_grace=0.1, max_losses=3
        )
        assert report.dead_workers == (first,)
        await eventually(lambda: worker.id != first)
        await eventually(lambda: jobs.backend.worker_status(worker.id) == "running")
        job_id = await jobs.add.aenqueue(a=1, b=2)
        await eventually(lambda: status(jobs.backend, job_id) is JobStatus.DONE)
        assert jobs.backend.get_job_sync(job_id).worker_id == worker.id  # type: ignore[union-attr]
    assert jobs.backend.worker_status(first) == "dead"


@pytest.mark.asyncio
async def test_the_cleanup_loop_prunes_with_the_backend(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock)
    jobs = build_jobs(backend, cleanup_interval=0.05, result_retention=60)
    job_id = await jobs.add.aenqueue(a=1, b=1)
    assert await bounded(jobs.worker().run_once()) is True
    clock.advance(61)
    worker = jobs.worker()
    async with running(worker, concurrency=1):
        await eventually(lambda: backend.get_job_sync(job_id) is None)

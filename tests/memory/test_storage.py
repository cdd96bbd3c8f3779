"""The storage side of MemoryBackend: inserts, deduplication, lookups, inspection, and the
wake-up callbacks; driven directly, without an app."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest

from soniq import ConfigurationError, InvalidConnectionError, JobStatus
from soniq.backends.base import StorageBackend, WorkerBackend
from soniq.backends.memory import MemoryBackend
from tests.memory.conftest import FakeClock, error, new_job, register


def test_capabilities_and_protocols(backend: MemoryBackend) -> None:
    assert backend.supports_listen is False
    assert backend.supports_transactional_enqueue is False
    assert isinstance(backend, StorageBackend)
    assert isinstance(backend, WorkerBackend)


def test_insert_stores_queued_jobs_and_returns_ids_in_order(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    later = clock.now + timedelta(hours=1)
    first = new_job(args={"n": 1}, queue="q1", priority=7, max_attempts=5)
    second = new_job("mem.other", args={"n": 2}, scheduled_at=later)
    ids = backend.insert_jobs_sync([first, second])
    assert ids == [str(first.id), str(second.id)]

    info = backend.get_job_sync(ids[0])
    assert info is not None
    assert (info.id, info.task_name, info.status, info.args) == (
        ids[0],
        "mem.task",
        JobStatus.QUEUED,
        {"n": 1},
    )
    assert (info.queue, info.priority, info.attempts, info.max_attempts) == ("q1", 7, 0, 5)
    assert info.scheduled_at == clock.now, "no scheduled_at means now, on the backend's clock"
    assert info.created_at == clock.now
    assert (info.started_at, info.finished_at, info.worker_id, info.result) == (
        None,
        None,
        None,
        None,
    )
    assert (info.errors, info.dedup_key, info.dead_letter_reason) == ([], None, None)
    other = backend.get_job_sync(ids[1])
    assert other is not None and other.scheduled_at == later
    assert backend.insert_jobs_sync([]) == []


@pytest.mark.asyncio
async def test_async_insert_and_get(backend: MemoryBackend) -> None:
    job = new_job(args={"x": [1, 2]})
    assert await backend.insert_jobs([job]) == [str(job.id)]
    info = await backend.get_job(str(job.id))
    assert info is not None and info.args == {"x": [1, 2]}
    # Upper-case or brace forms of the id name the same job (the database compares UUIDs).
    assert await backend.get_job(str(job.id).upper()) == info
    assert await backend.get_job("not-a-uuid") is None
    assert await backend.get_job(str(new_job().id)) is None


@pytest.mark.asyncio
async def test_a_connection_is_refused(backend: MemoryBackend) -> None:
    with pytest.raises(InvalidConnectionError, match="memory backend has no connections"):
        backend.insert_jobs_sync([new_job()], connection=object())
    with pytest.raises(InvalidConnectionError, match="memory backend has no connections"):
        await backend.insert_jobs([new_job()], connection=object())
    assert backend.jobs() == []


def test_a_taken_id_refuses_the_whole_batch(backend: MemoryBackend) -> None:
    job = new_job()
    backend.insert_jobs_sync([job])
    with pytest.raises(ValueError, match="already exists"):
        backend.insert_jobs_sync([new_job(), job])
    assert len(backend.jobs()) == 1


def test_returned_values_are_copies(backend: MemoryBackend) -> None:
    job = new_job(args={"items": [1]})
    backend.insert_jobs_sync([job])
    info = backend.get_job_sync(str(job.id))
    assert info is not None
    info.args["items"].append(2)
    job.args["items"] = "changed after insert"
    again = backend.get_job_sync(str(job.id))
    assert again is not None and again.args == {"items": [1]}


@pytest.mark.asyncio
async def test_dedup_returns_the_live_holder_until_it_finishes(backend: MemoryBackend) -> None:
    a, b, c = (new_job(dedup_key="k") for _ in range(3))
    other_task = new_job("mem.other", dedup_key="k")
    ids = backend.insert_jobs_sync([a, b, other_task])
    assert ids == [str(a.id), str(a.id), str(other_task.id)], "the key is per task name"
    assert len(backend.jobs()) == 2
    holder = str(a.id)

    worker = await register(backend)
    [claimed] = await backend.claim_jobs(worker, ["mem.task"], None, 1)
    assert claimed.id == holder
    assert backend.insert_jobs_sync([b]) == [holder], "a processing job still holds its key"
    assert await backend.retry_job(worker, holder, 1, 0, error(1, worker))
    assert backend.insert_jobs_sync([b]) == [holder], "requeued for a retry: still held"
    await backend.claim_jobs(worker, ["mem.task"], None, 1)
    assert await backend.complete_jobs(worker, [(holder, 2, None)]) == 1

    assert backend.insert_jobs_sync([b]) == [str(b.id)], "done: the key is free again"
    [claimed] = await backend.claim_jobs(worker, ["mem.task"], None, 1)
    assert await backend.dead_letter_job(worker, str(b.id), 1, error(1, worker), "max_attempts")
    assert backend.insert_jobs_sync([c]) == [str(c.id)], "dead-lettered: free again"


def test_plain_jobs_never_deduplicate(backend: MemoryBackend) -> None:
    ids = backend.insert_jobs_sync([new_job(), new_job()])
    assert len(set(ids)) == 2


@pytest.mark.asyncio
async def test_dead_letters_are_reported_by_get_job(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    job = new_job(args={"n": 5}, queue="q1", priority=7, dedup_key="dk")
    backend.insert_jobs_sync([job])
    worker = await register(backend)
    await backend.claim_jobs(worker, ["mem.task"], None, 1)
    clock.advance(5)
    assert await backend.dead_letter_job(worker, str(job.id), 1, error(1, worker), "boom")
    info = await backend.get_job(str(job.id))
    assert info is not None
    assert (info.status, info.dead_letter_reason, info.attempts) == (
        JobStatus.DEAD_LETTER,
        "boom",
        1,
    )
    assert (info.args, info.queue, info.priority, info.dedup_key) == ({"n": 5}, "q1", 7, "dk")
    assert (info.worker_id, info.finished_at, info.result) == (worker, clock.now, None)
    assert info.errors == [error(1, worker)]
    assert backend.jobs() == []
    assert backend.dead_letters() == [info]


@pytest.mark.asyncio
async def test_jobs_dead_letters_and_clear(backend: MemoryBackend) -> None:
    kept, dead = new_job(args={"n": 1}), new_job(args={"n": 2})
    backend.insert_jobs_sync([kept, dead])
    worker = await register(backend)
    claimed = await backend.claim_jobs(worker, ["mem.task"], None, 2)
    assert [job.id for job in claimed] == [str(kept.id), str(dead.id)]
    await backend.dead_letter_job(worker, str(dead.id), 1, error(1, worker), "max_attempts")
    assert [job.id for job in backend.jobs()] == [str(kept.id)]
    assert [job.id for job in backend.dead_letters()] == [str(dead.id)]
    assert backend.worker_status(worker) == "running"

    seen: list[str] = []
    backend.on_insert.append(seen.append)
    backend.clear()
    assert (backend.jobs(), backend.dead_letters(), backend.worker_status(worker)) == ([], [], None)
    backend.insert_jobs_sync([new_job(dedup_key="k")])
    assert seen == ["default"], "callbacks survive clear()"


def test_on_insert_is_called_once_per_queue_of_stored_jobs(backend: MemoryBackend) -> None:
    seen: list[str] = []
    backend.on_insert.append(seen.append)
    backend.insert_jobs_sync([new_job(queue="a"), new_job(queue="b"), new_job(queue="a")])
    assert seen == ["a", "b"]
    seen.clear()
    holder = new_job(queue="c", dedup_key="k")
    backend.insert_jobs_sync([holder])
    assert seen == ["c"]
    seen.clear()
    assert backend.insert_jobs_sync([new_job(queue="c", dedup_key="k")]) == [str(holder.id)]
    assert seen == [], "nothing stored, nobody woken"


def test_a_failing_callback_does_not_fail_the_insert(backend: MemoryBackend) -> None:
    seen: list[str] = []

    def broken(queue: str) -> None:
        raise RuntimeError("callback bug")

    backend.on_insert.extend([broken, seen.append])
    [job_id] = backend.insert_jobs_sync([new_job(queue="q")])
    assert seen == ["q"]
    assert backend.get_job_sync(job_id) is not None


@pytest.mark.asyncio
async def test_a_callback_may_use_the_backend(backend: MemoryBackend) -> None:
    """Callbacks run after the lock is released: reading the backend there does not deadlock."""
    counts: list[int] = []
    backend.on_insert.append(lambda queue: counts.append(len(backend.jobs())))
    await backend.insert_jobs([new_job(), new_job()])
    assert counts == [2]


@pytest.mark.asyncio
async def test_open_session_is_refused_with_a_clear_message(backend: MemoryBackend) -> None:
    with pytest.raises(ConfigurationError, match="no worker session"):
        await backend.open_session(listen=True)
    await backend.prepare_for_work()
    await backend.close()


@pytest.mark.asyncio
async def test_close_keeps_the_data(backend: MemoryBackend) -> None:
    [job_id] = await backend.insert_jobs([new_job()])
    await backend.close()
    assert await backend.get_job(job_id) is not None


def test_naive_clock_times_are_taken_as_utc() -> None:
    aware = FakeClock()
    naive = aware.now.replace(tzinfo=None)
    backend = MemoryBackend(clock=lambda: naive)
    [job_id] = backend.insert_jobs_sync([new_job()])
    info = backend.get_job_sync(job_id)
    assert info is not None and info.created_at == aware.now


def test_threads_insert_and_claim_without_losing_or_doubling_a_job(
    backend: MemoryBackend,
) -> None:
    producers, per_producer, consumers = 6, 200, 4
    claimed: list[list[str]] = [[] for _ in range(consumers)]
    produced = threading.Event()
    failures: list[BaseException] = []

    def produce() -> None:
        try:
            for _ in range(per_producer):
                backend.insert_jobs_sync([new_job()])
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    def consume(index: int) -> None:
        async def loop() -> None:
            worker = await register(backend)
            while True:
                # Everything was inserted before this claim: if it finds nothing, drained.
                finished_producing = produced.is_set()
                jobs = await backend.claim_jobs(worker, ["mem.task"], None, 7)
                claimed[index].extend(job.id for job in jobs)
                if not jobs and finished_producing:
                    return

        try:
            asyncio.run(loop())
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    producer_threads = [threading.Thread(target=produce) for _ in range(producers)]
    consumer_threads = [threading.Thread(target=consume, args=(i,)) for i in range(consumers)]
    for thread in producer_threads + consumer_threads:
        thread.start()
    for thread in producer_threads:
        thread.join(timeout=30)
    produced.set()
    for thread in consumer_threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in producer_threads + consumer_threads)
    assert failures == []
    every = [job_id for ids in claimed for job_id in ids]
    assert len(every) == producers * per_producer
    assert len(set(every)) == len(every), "no job was claimed twice"
    assert {job.status for job in backend.jobs()} == {JobStatus.PROCESSING}

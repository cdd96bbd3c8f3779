"""MemoryBackend's worker operations, played by hand: the claim, fenced writes, recovery of
the jobs of dead workers, release, stray release and pruning. Mirrors
tests/worker/test_fencing_and_recovery.py, with the clock moved instead of rows aged."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from soniq import JobStatus
from soniq.backends.memory import MemoryBackend
from soniq.core.records import JobInfo, WorkerInfo
from tests.memory.conftest import FakeClock, error, new_job, register

TASK = "mem.task"


def new_id() -> str:
    return str(uuid.uuid4())


def row(backend: MemoryBackend, job_id: str) -> JobInfo:
    info = backend.get_job_sync(job_id)
    assert info is not None
    return info


async def claim_and_start(backend: MemoryBackend, worker: str, limit: int = 1) -> list[str]:
    """Claim like a worker and record the start of every job claimed (now running)."""
    claimed = await backend.claim_jobs(worker, [TASK], None, limit)
    await backend.start_jobs(worker, [(job.id, job.attempt) for job in claimed])
    return [job.id for job in claimed]


async def recover(backend: MemoryBackend, **overrides: Any) -> Any:
    options = {"heartbeat_timeout": 60, "lock_grace": 1, "max_losses": 3, **overrides}
    return await backend.recover_stale_workers(**options)


@pytest.mark.asyncio
async def test_claim_takes_the_most_urgent_due_jobs_first(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    t0 = clock.now
    jobs = {
        "p5": new_job(priority=5),
        "p1_late": new_job(priority=1, scheduled_at=t0 - timedelta(seconds=10)),
        "p1_early": new_job(priority=1, scheduled_at=t0 - timedelta(seconds=20)),
        "p3": new_job(priority=3),
        "future": new_job(priority=0, scheduled_at=t0 + timedelta(seconds=60)),
    }
    backend.insert_jobs_sync(list(jobs.values()))
    worker = await register(backend)
    names = {str(job.id): name for name, job in jobs.items()}

    first = await backend.claim_jobs(worker, [TASK], None, 2)
    assert [names[job.id] for job in first] == ["p1_early", "p1_late"]
    rest = await backend.claim_jobs(worker, [TASK], None, 10)
    assert [names[job.id] for job in rest] == ["p3", "p5"], "the future job is not due"
    assert await backend.claim_jobs(worker, [TASK], None, 10) == []

    clock.advance(60)
    [due] = await backend.claim_jobs(worker, [TASK], None, 10)
    assert names[due.id] == "future"


@pytest.mark.asyncio
async def test_claim_sets_the_attempt_the_worker_and_the_start(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    job = new_job(args={"n": 1}, queue="q1", priority=4, max_attempts=2)
    backend.insert_jobs_sync([job])
    worker = await register(backend)
    clock.advance(3)
    [claimed] = await backend.claim_jobs(worker, [TASK], None, 1)
    assert (claimed.id, claimed.task_name, claimed.args, claimed.queue) == (
        str(job.id),
        TASK,
        {"n": 1},
        "q1",
    )
    assert (claimed.priority, claimed.attempt, claimed.max_attempts) == (4, 1, 2)
    assert claimed.claimed_by == worker
    assert claimed.scheduled_at == claimed.created_at == clock.now - timedelta(seconds=3)
    info = row(backend, str(job.id))
    assert (info.status, info.attempts, info.worker_id, info.started_at) == (
        JobStatus.PROCESSING,
        1,
        worker,
        None,
    ), "claimed, not started"
    clock.advance(1)
    assert await backend.start_jobs(worker, [(str(job.id), 1)]) == 1
    assert row(backend, str(job.id)).started_at == clock.now
    clock.advance(1)
    assert await backend.start_jobs(worker, [(str(job.id), 1)]) == 1, "idempotent"
    assert row(backend, str(job.id)).started_at == clock.now - timedelta(seconds=1), "kept"
    assert await backend.claim_jobs(worker, [TASK], None, 0) == []


@pytest.mark.asyncio
async def test_claim_takes_only_the_given_task_names_and_queues(backend: MemoryBackend) -> None:
    mine_a = new_job(queue="a")
    mine_b = new_job(queue="b")
    theirs = new_job("mem.other", queue="a")
    backend.insert_jobs_sync([mine_a, mine_b, theirs])
    worker = await register(backend)
    assert await backend.claim_jobs(worker, [TASK], [], 10) == [], "no queue: nothing"
    assert await backend.claim_jobs(worker, ["mem.unknown"], None, 10) == []
    [in_a] = await backend.claim_jobs(worker, [TASK], ["a"], 10)
    assert in_a.id == str(mine_a.id)
    [any_queue] = await backend.claim_jobs(worker, [TASK], None, 10)
    assert any_queue.id == str(mine_b.id)
    [other] = await backend.claim_jobs(worker, [TASK, "mem.other"], ["a", "b"], 10)
    assert other.id == str(theirs.id)


@pytest.mark.asyncio
async def test_finishing_writes_need_the_claiming_worker_and_attempt(
    backend: MemoryBackend,
) -> None:
    [job_id] = backend.insert_jobs_sync([new_job(args={"n": 1})])
    a, b = await register(backend), await register(backend)
    [job] = await backend.claim_jobs(a, [TASK], None, 1)
    assert (job.id, job.attempt) == (job_id, 1)

    assert await backend.complete_jobs(b, [(job_id, 1, '"wrong worker"')]) == 0
    assert await backend.complete_jobs(a, [(job_id, 2, '"wrong attempt"')]) == 0
    assert await backend.retry_job(b, job_id, 1, 0, error(1, b)) is False
    assert await backend.retry_job(a, job_id, 2, 0, error(2, a)) is False
    assert await backend.dead_letter_job(b, job_id, 1, error(1, b), "max_attempts") is False
    assert await backend.dead_letter_job(a, job_id, 0, error(0, a), "max_attempts") is False
    assert await backend.release_jobs(b, [(job_id, 1)]) == 0
    assert await backend.release_jobs(a, [(job_id, 2)]) == 0
    unchanged = row(backend, job_id)
    assert (unchanged.status, unchanged.attempts, unchanged.worker_id) == (
        JobStatus.PROCESSING,
        1,
        a,
    )
    assert unchanged.errors == [] and unchanged.result is None
    assert backend.dead_letters() == []

    assert await backend.complete_jobs(a, [(job_id, 1, '{"ok": true}')]) == 1
    done = row(backend, job_id)
    assert (done.status, done.result) == (JobStatus.DONE, {"ok": True})
    # Finished: no later write of any kind applies, not even the owner's.
    assert await backend.complete_jobs(a, [(job_id, 1, '"again"')]) == 0
    assert await backend.retry_job(a, job_id, 1, 0, error(1, a)) is False
    assert await backend.dead_letter_job(a, job_id, 1, error(1, a), "max_attempts") is False
    assert await backend.release_jobs(a, [(job_id, 1)]) == 0
    assert row(backend, job_id).result == {"ok": True}


@pytest.mark.asyncio
async def test_a_completion_batch_applies_only_its_fenced_rows(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    backend.insert_jobs_sync([new_job(args={"n": n}) for n in range(3)])
    a = await register(backend)
    jobs = await backend.claim_jobs(a, [TASK], None, 10)
    assert len(jobs) == 3 and {job.attempt for job in jobs} == {1}
    clock.advance(2)
    batch = [(jobs[0].id, 1, "1"), (jobs[1].id, 2, "2"), (jobs[2].id, 1, None)]
    assert await backend.complete_jobs(a, batch) == 2
    assert [row(backend, job.id).status for job in jobs] == [
        JobStatus.DONE,
        JobStatus.PROCESSING,
        JobStatus.DONE,
    ]
    assert row(backend, jobs[0].id).result == 1
    assert row(backend, jobs[0].id).finished_at == clock.now
    assert row(backend, jobs[2].id).result is None
    assert await backend.complete_jobs(a, []) == 0


@pytest.mark.asyncio
async def test_an_invalid_result_fails_the_whole_batch(backend: MemoryBackend) -> None:
    backend.insert_jobs_sync([new_job(), new_job()])
    a = await register(backend)
    first, second = await backend.claim_jobs(a, [TASK], None, 2)
    with pytest.raises(ValueError):  # noqa: PT011 - json's own error
        await backend.complete_jobs(a, [(first.id, 1, "1"), (second.id, 1, "{not json")])
    assert {job.status for job in backend.jobs()} == {JobStatus.PROCESSING}


@pytest.mark.asyncio
async def test_retry_requeues_after_the_delay_with_the_error_appended(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    [job_id] = backend.insert_jobs_sync([new_job()])
    a = await register(backend)
    await claim_and_start(backend, a)
    started = clock.now
    assert await backend.retry_job(a, job_id, 1, 3600, error(1, a, "first")) is True
    info = row(backend, job_id)
    assert (info.status, info.attempts, info.worker_id) == (JobStatus.QUEUED, 1, None)
    assert info.errors == [error(1, a, "first")]
    assert info.scheduled_at == clock.now + timedelta(seconds=3600)
    assert info.started_at == started, "kept, as the UPDATE leaves it"
    assert await backend.claim_jobs(a, [TASK], None, 1) == [], "not due yet"
    clock.advance(3599)
    assert await backend.claim_jobs(a, [TASK], None, 1) == [], "still not due"
    clock.advance(1)
    [again] = await backend.claim_jobs(a, [TASK], None, 1)
    assert again.attempt == 2


@pytest.mark.asyncio
async def test_an_absurd_retry_delay_does_not_overflow(backend: MemoryBackend) -> None:
    [job_id] = backend.insert_jobs_sync([new_job()])
    a = await register(backend)
    await backend.claim_jobs(a, [TASK], None, 1)
    assert await backend.retry_job(a, job_id, 1, 1e15, error(1, a)) is True
    info = row(backend, job_id)
    assert info.scheduled_at is not None and info.scheduled_at.year == 9999


@pytest.mark.asyncio
async def test_dead_lettering_moves_the_job_with_every_error(backend: MemoryBackend) -> None:
    [job_id] = backend.insert_jobs_sync([new_job(args={"n": 5}, priority=7, queue="q1")])
    a = await register(backend)
    await backend.claim_jobs(a, [TASK], None, 1)
    assert await backend.retry_job(a, job_id, 1, 0, error(1, a, "first")) is True
    await backend.claim_jobs(a, [TASK], None, 1)
    assert await backend.dead_letter_job(a, job_id, 2, error(2, a, "last"), "max_attempts")
    assert backend.jobs() == []
    info = row(backend, job_id)
    assert (info.status, info.dead_letter_reason, info.worker_id, info.attempts) == (
        JobStatus.DEAD_LETTER,
        "max_attempts",
        a,
        2,
    )
    assert info.errors == [error(1, a, "first"), error(2, a, "last")]
    assert (info.args, info.priority, info.queue) == ({"n": 5}, 7, "q1")
    # A second move of the same job finds nothing to move.
    assert not await backend.dead_letter_job(a, job_id, 2, error(2, a), "max_attempts")
    assert len(backend.dead_letters()) == 1


@pytest.mark.asyncio
async def test_a_silent_workers_running_job_is_charged_and_fenced_from_it(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    [job_id] = backend.insert_jobs_sync([new_job()])
    enqueued_at = clock.now
    dead, alive = await register(backend), await register(backend)
    await claim_and_start(backend, dead)
    clock.advance(30)
    assert await backend.heartbeat(alive) == "running"
    report = await recover(backend)
    assert (report.dead_workers, report.requeued, report.dead_lettered) == ((), 0, 0)

    clock.advance(31)  # dead: 61 s silent; alive: 31 s
    report = await recover(backend)
    assert report.dead_workers == (dead,)
    assert (report.requeued, report.dead_lettered) == (1, 0)
    info = row(backend, job_id)
    assert (info.status, info.attempts, info.worker_id, info.started_at) == (
        JobStatus.QUEUED,
        1,
        None,
        None,
    ), "the lost run counts as an attempt"
    assert info.scheduled_at == enqueued_at, "keeps its place in the queue"
    [lost] = info.errors
    assert lost == {
        "attempt": 1,
        "error_type": "soniq.WorkerLost",
        "message": "the worker running this job stopped responding",
        "traceback": "",
        "worker_id": dead,
        "failed_at": clock.now.isoformat(),
    }
    assert backend.worker_status(dead) == "dead"
    assert backend.worker_status(alive) == "running"

    # The presumed-dead worker was alive after all: nothing it writes applies.
    assert await backend.complete_jobs(dead, [(job_id, 1, '"late"')]) == 0
    assert row(backend, job_id).status is JobStatus.QUEUED
    assert await backend.heartbeat(dead) == "dead"

    # Its successor runs the next attempt, alone (it may be what killed the worker).
    [taken] = await backend.claim_jobs(alive, [TASK], None, 1)
    assert (taken.attempt, taken.runs_alone) == (2, True)
    assert await backend.complete_jobs(dead, [(job_id, 1, '"late"')]) == 0
    assert await backend.retry_job(dead, job_id, 1, 0, error(1, dead)) is False
    assert await backend.release_jobs(dead, [(job_id, 1)]) == 0
    assert row(backend, job_id).worker_id == alive
    assert await backend.complete_jobs(alive, [(job_id, 2, '"right"')]) == 1
    assert row(backend, job_id).result == "right"

    # Deregistering cannot bring a dead worker back to "stopped", and nothing is left to do.
    await backend.deregister_worker(dead)
    assert backend.worker_status(dead) == "dead"
    again = await recover(backend)
    assert (again.dead_workers, again.requeued, again.dead_lettered) == ((), 0, 0)


@pytest.mark.asyncio
async def test_a_job_that_lost_max_losses_workers_is_dead_lettered(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    [job_id] = backend.insert_jobs_sync([new_job()])
    for loss in range(1, 3):
        worker = await register(backend)
        await claim_and_start(backend, worker)
        clock.advance(61)
        report = await recover(backend, max_losses=3)
        assert (report.dead_workers, report.requeued, report.dead_lettered) == ((worker,), 1, 0)
        assert len(row(backend, job_id).errors) == loss

    unlucky = worker = await register(backend)
    lucky_id = backend.insert_jobs_sync([new_job(args={"n": 2})])[0]
    assert len(await backend.claim_jobs(worker, [TASK], None, 2)) == 2
    assert await backend.start_jobs(worker, [(job_id, 3)]) == 1  # the other one never started
    clock.advance(61)
    report = await recover(backend, max_losses=3)
    assert (report.dead_workers, report.requeued, report.dead_lettered) == ((unlucky,), 0, 1)
    assert report.released == 1
    info = row(backend, job_id)
    assert (info.status, info.dead_letter_reason, info.attempts) == (
        JobStatus.DEAD_LETTER,
        "worker_lost",
        3,
    )
    assert [e["error_type"] for e in info.errors] == ["soniq.WorkerLost"] * 3
    assert info.finished_at == clock.now
    released = row(backend, lucky_id)
    assert (released.status, released.attempts, released.errors) == (JobStatus.QUEUED, 0, [])


@pytest.mark.asyncio
async def test_max_losses_of_one_dead_letters_at_the_first_loss(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    [job_id] = backend.insert_jobs_sync([new_job(dedup_key="k")])
    worker = await register(backend)
    await claim_and_start(backend, worker)
    clock.advance(61)
    report = await recover(backend, max_losses=1)
    assert (report.requeued, report.dead_lettered) == (0, 1)
    assert row(backend, job_id).status is JobStatus.DEAD_LETTER
    assert backend.insert_jobs_sync([new_job(dedup_key="k")]) != [job_id], "key released"


@pytest.mark.asyncio
async def test_jobs_held_by_stopped_or_unknown_workers_are_recovered(
    backend: MemoryBackend,
) -> None:
    by_stopped, by_unknown, by_running = backend.insert_jobs_sync(
        [new_job(args={"n": n}) for n in range(3)]
    )
    stopped, running = await register(backend), await register(backend)
    assert (await backend.claim_jobs(stopped, [TASK], None, 1))[0].id == by_stopped
    assert (await backend.claim_jobs(new_id(), [TASK], None, 1))[0].id == by_unknown
    assert (await backend.claim_jobs(running, [TASK], None, 1))[0].id == by_running
    await backend.deregister_worker(stopped)
    assert backend.worker_status(stopped) == "stopped"

    report = await recover(backend)
    assert report.dead_workers == ()
    assert (report.requeued, report.released, report.dead_lettered) == (0, 2, 0)
    assert row(backend, by_stopped).status is JobStatus.QUEUED
    assert row(backend, by_unknown).status is JobStatus.QUEUED
    assert row(backend, by_running).status is JobStatus.PROCESSING
    assert backend.worker_status(stopped) == "stopped"


@pytest.mark.asyncio
async def test_release_puts_a_job_back_without_charging_the_attempt(
    backend: MemoryBackend,
) -> None:
    [job_id] = backend.insert_jobs_sync([new_job()])
    a = await register(backend)
    await backend.claim_jobs(a, [TASK], None, 1)
    assert await backend.release_jobs(a, []) == 0
    assert await backend.release_jobs(a, [(job_id, 1)]) == 1
    info = row(backend, job_id)
    assert (info.status, info.attempts, info.worker_id, info.started_at) == (
        JobStatus.QUEUED,
        0,
        None,
        None,
    )
    assert info.errors == []
    [again] = await backend.claim_jobs(a, [TASK], None, 1)
    assert again.attempt == 1


@pytest.mark.asyncio
async def test_release_strays_requeues_only_old_jobs_the_worker_is_not_running(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    running, stray = backend.insert_jobs_sync([new_job(args={"n": 1}), new_job(args={"n": 2})])
    a, b = await register(backend), await register(backend)
    assert len(await backend.claim_jobs(a, [TASK], None, 2)) == 2
    [others] = backend.insert_jobs_sync([new_job(args={"n": 4})])
    assert (await backend.claim_jobs(b, [TASK], None, 1))[0].id == others
    clock.advance(3600)
    [fresh] = backend.insert_jobs_sync([new_job(args={"n": 3})])
    assert (await backend.claim_jobs(a, [TASK], None, 1))[0].id == fresh

    assert await backend.release_strays(a, [running], older_than=5) == 1
    assert (row(backend, stray).status, row(backend, stray).attempts) == (JobStatus.QUEUED, 0)
    assert row(backend, running).status is JobStatus.PROCESSING
    assert row(backend, fresh).status is JobStatus.PROCESSING, "just claimed: not a stray yet"
    assert row(backend, others).worker_id == b, "another worker's job is not touched"


@pytest.mark.asyncio
async def test_prune_deletes_only_finished_jobs_older_than_the_retention(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    old_done, new_done, dead, processing, queued = backend.insert_jobs_sync(
        [new_job(args={"n": n}) for n in range(5)]
    )
    worker = await register(backend)
    old_stopped = await register(backend)
    claimed = await backend.claim_jobs(worker, [TASK], None, 4)
    assert [job.id for job in claimed] == [old_done, new_done, dead, processing]
    await backend.complete_jobs(worker, [(old_done, 1, None)])
    await backend.dead_letter_job(worker, dead, 1, error(1, worker), "max_attempts")
    await backend.deregister_worker(old_stopped)
    clock.advance(3000)
    await backend.complete_jobs(worker, [(new_done, 1, None)])
    new_stopped = await register(backend)
    await backend.deregister_worker(new_stopped)
    clock.advance(601)  # old_done finished (and old_stopped stopped) 3601 s ago; the rest 601

    assert await backend.prune(retention=3600) == 1
    assert backend.get_job_sync(old_done) is None
    assert {job.id for job in backend.jobs()} == {new_done, processing, queued}
    assert backend.get_job_sync(dead) is not None, "dead letters are not pruned"
    assert backend.worker_status(old_stopped) is None
    assert backend.worker_status(new_stopped) == "stopped"
    assert backend.worker_status(worker) == "running"
    assert await backend.prune(retention=3600) == 0
    assert await backend.prune(retention=600, batch=1) == 1, "everything at once, any batch"
    assert {job.id for job in backend.jobs()} == {processing, queued}
    assert backend.worker_status(new_stopped) is None


@pytest.mark.asyncio
async def test_register_heartbeat_and_deregister(backend: MemoryBackend, clock: FakeClock) -> None:
    worker = await register(backend, lock_key=42)
    assert backend.worker_status(worker) == "running"
    clock.advance(61)
    assert await backend.heartbeat(worker) == "running"
    report = await recover(backend)
    assert report.dead_workers == (), "the heartbeat was refreshed on the clock"
    assert await backend.heartbeat(new_id()) is None
    await backend.deregister_worker(worker)
    assert backend.worker_status(worker) == "stopped"
    assert await backend.heartbeat(worker) == "stopped"
    await backend.deregister_worker(new_id())  # unknown: nothing happens

    # Registering the same id again revives it (a Worker keeps its id across runs).
    [job_id] = backend.insert_jobs_sync([new_job()])
    info_worker = await register(backend)
    await backend.deregister_worker(info_worker)
    await backend.register_worker(
        WorkerInfo(info_worker, "h", 1, None, (TASK,), 1, "test"), lock_key=None
    )
    assert backend.worker_status(info_worker) == "running"
    await backend.claim_jobs(info_worker, [TASK], None, 1)
    report = await recover(backend)
    assert report.requeued == 0, "a running worker's job stays"
    assert row(backend, job_id).status is JobStatus.PROCESSING

"""Operator actions (retry, cancel, requeue and delete by id): the same changes and the same
explanations on every backend, through the async methods and their ``_sync`` twins (run in a
thread, as a synchronous caller would)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from soniq import JobContext, JobInfo, JobStatus, Soniq
from soniq.backends import memory, operator_plans
from soniq.backends.base import WorkerBackend
from soniq.core import operations
from soniq.core.operations import ActionResult
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
Action = Callable[[Sequence[str]], Awaitable[ActionResult]]

# A continuous worker must take a job put back in the queue well before its next poll.
WAKE_DEADLINE = 5.0
IDLE_POLL_INTERVAL = 30.0

HERE = f"{socket.gethostname()}:{os.getpid()}"  # the label of a worker of this process


@dataclass
class Operator:
    retry: Action
    cancel: Action
    requeue: Action
    delete: Action


def _threaded(method: Callable[[Sequence[str]], ActionResult]) -> Action:
    async def call(job_ids: Sequence[str]) -> ActionResult:
        return await asyncio.to_thread(method, job_ids)

    return call


@pytest.fixture(params=["async", "sync"])
def operator(request: pytest.FixtureRequest, app: Soniq) -> Operator:
    """The app's four actions, awaited directly or (``_sync``) called from a thread."""
    if request.param == "async":
        return Operator(
            app.retry_jobs, app.cancel_jobs, app.requeue_dead_letters, app.delete_dead_letters
        )
    return Operator(
        _threaded(app.retry_jobs_sync),
        _threaded(app.cancel_jobs_sync),
        _threaded(app.requeue_dead_letters_sync),
        _threaded(app.delete_dead_letters_sync),
    )


class Jobs:
    """Jobs that fail while ``failing`` is set: with no retries, straight to the dead letters
    (``unique`` deduplicates on its arguments)."""

    def __init__(self, app: Soniq) -> None:
        self.app = app
        self.failing = True
        self.ran: list[str] = []

        @app.job(name="conf.ops.flaky", retries=0, queue="ops")
        async def flaky(n: int, ctx: JobContext) -> int:
            self.ran.append(ctx.job_id)
            if self.failing:
                raise RuntimeError(f"failed {n} (attempt {ctx.attempt})")
            return n

        @app.job(name="conf.ops.unique", retries=0, unique=True, queue="ops")
        async def unique(key: str, ctx: JobContext) -> str:
            self.ran.append(ctx.job_id)
            if self.failing:
                raise RuntimeError(f"failed {key}")
            return key

        self.flaky = flaky
        self.unique = unique

    async def dead_letters(self, worker: Worker, job: Any, rows: list[dict[str, Any]]) -> list[str]:
        """Enqueue ``rows`` of ``job`` and let ``worker`` fail them into the dead letters."""
        ids = [await self.app.enqueue(job, **row) for row in rows]
        assert await bounded(worker.run_once()) is True
        for job_id in ids:
            assert (await stored(self.app, job_id)).status is JobStatus.DEAD_LETTER
        return ids


async def stored(app: Soniq, job_id: str) -> JobInfo:
    info = await app.get_job(job_id)
    assert info is not None, f"{backend_name(app)}: job {job_id} not found"
    return info


def unknown() -> str:
    return str(uuid.uuid4())


async def test_retry_makes_a_scheduled_job_due(app: Soniq, operator: Operator) -> None:
    jobs = Jobs(app)
    jobs.failing = False
    later = await app.schedule(jobs.flaky, 3600, n=1)
    before = datetime.now(UTC)
    assert await bounded(app.run_worker(run_once=True)) is False, "not due yet"

    result = await operator.retry([later])
    assert result.applied == (later,)
    assert result.refused == {}
    assert result.queues == frozenset({"ops"})
    info = await stored(app, later)
    assert info.status is JobStatus.QUEUED
    assert info.scheduled_at is not None
    assert before - timedelta(seconds=5) <= info.scheduled_at <= datetime.now(UTC)
    assert await bounded(app.run_worker(run_once=True)) is True
    assert (await stored(app, later)).status is JobStatus.DONE


async def test_retry_brings_a_dead_letter_back_and_a_worker_runs_it(
    app: Soniq, operator: Operator, workers: MakeWorker
) -> None:
    jobs = Jobs(app)
    worker = workers(app)
    [dead] = await jobs.dead_letters(worker, jobs.flaky, [{"n": 7}])
    info = await stored(app, dead)
    assert (info.attempts, info.max_attempts, info.dead_letter_reason) == (1, 1, "max_attempts")

    result = await operator.retry([dead])
    assert result.applied == (dead,)
    assert result.refused == {}
    assert result.queues == frozenset({"ops"})
    info = await stored(app, dead)
    assert info.status is JobStatus.QUEUED
    assert (info.task_name, info.args, info.queue) == ("conf.ops.flaky", {"n": 7}, "ops")
    assert (info.attempts, info.max_attempts) == (0, 1), "attempts start over"
    assert info.worker_id is None and info.started_at is None and info.finished_at is None
    assert info.dead_letter_reason is None and info.result is None
    assert [error["message"] for error in info.errors] == ["failed 7 (attempt 1)"]
    assert info.scheduled_at is not None and info.scheduled_at <= datetime.now(UTC)
    assert (await operator.requeue([dead])).refused == {
        dead: "it is not a dead letter (it is queued): it was requeued already"
    }

    jobs.failing = False
    assert await bounded(worker.run_once()) is True
    info = await stored(app, dead)
    assert (info.status, info.result, info.attempts) == (JobStatus.DONE, 7, 1)
    assert len(info.errors) == 1, "the history of the dead letter is kept"
    assert jobs.ran == [dead, dead]


async def test_running_and_done_jobs_are_refused_with_the_reason(
    app: Soniq, operator: Operator, workers: MakeWorker
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @app.job(name="conf.ops.slow")
    async def slow() -> str:
        started.set()
        await release.wait()
        return "finished"

    job_id = await app.enqueue(slow)
    worker = workers(app)
    task = asyncio.create_task(worker.run_once())
    try:
        await bounded(started.wait())
        retried = await operator.retry([job_id])
        assert retried.applied == ()
        assert retried.refused == {
            job_id: f"it is running on live worker {HERE}; wait for it to finish"
        }
        cancelled = await operator.cancel([job_id])
        assert cancelled.refused == {
            job_id: f"it is already running (on worker {HERE}); only queued jobs can be cancelled"
        }
        assert (await operator.requeue([job_id])).refused == {
            job_id: "it is not a dead letter (it is processing): it was requeued already"
        }
        assert (await operator.delete([job_id])).refused == {
            job_id: "it is not a dead letter (it is processing)"
        }
        info = await stored(app, job_id)
        assert (info.status, info.worker_id, info.attempts) == (JobStatus.PROCESSING, worker.id, 1)
    finally:
        release.set()
        assert await bounded(task) is True

    info = await stored(app, job_id)
    assert (info.status, info.result) == (JobStatus.DONE, "finished")
    assert (await operator.retry([job_id])).refused == {job_id: "it already finished successfully"}
    assert (await operator.cancel([job_id])).refused == {
        job_id: "it is done; only queued jobs can be cancelled"
    }
    assert (await stored(app, job_id)).status is JobStatus.DONE


async def test_a_job_held_by_a_stopped_worker_is_left_to_recovery(
    app: Soniq, operator: Operator, worker_backend: WorkerBackend
) -> None:
    jobs = Jobs(app)
    job_id = await app.enqueue(jobs.flaky, n=1)
    gone = worker_info(("conf.ops.flaky",))
    await worker_backend.register_worker(gone, None)
    [claimed] = await worker_backend.claim_jobs(gone.id, ["conf.ops.flaky"], None, 1)
    assert claimed.id == job_id
    await worker_backend.deregister_worker(gone.id)

    result = await operator.retry([job_id])
    assert result.refused == {
        job_id: f"it is held by worker {HERE}, which is not running; "
        "recovery puts it back in the queue"
    }
    assert (await stored(app, job_id)).status is JobStatus.PROCESSING


async def test_cancel_takes_only_queued_jobs(
    app: Soniq, operator: Operator, workers: MakeWorker
) -> None:
    jobs = Jobs(app)
    worker = workers(app)
    [dead] = await jobs.dead_letters(worker, jobs.flaky, [{"n": 0}])
    queued = await app.enqueue(jobs.flaky, n=1)
    later = await app.schedule(jobs.flaky, 3600, n=2)
    before = datetime.now(UTC)

    result = await operator.cancel([queued, dead, later])
    assert sorted(result.applied) == sorted([queued, later])
    assert list(result.refused) == [dead]
    assert result.refused[dead].endswith("; only queued jobs can be cancelled")
    assert result.queues == frozenset(), "nothing to wake for"
    for job_id in (queued, later):
        info = await stored(app, job_id)
        assert info.status is JobStatus.CANCELLED
        assert info.finished_at is not None
        assert before - timedelta(seconds=5) <= info.finished_at <= datetime.now(UTC)
    assert (await stored(app, dead)).status is JobStatus.DEAD_LETTER

    again = await operator.cancel([queued])
    assert again.refused == {queued: "it is cancelled; only queued jobs can be cancelled"}
    assert await bounded(worker.run_once()) is False, "a cancelled job is not claimed"

    # A cancelled job can be retried: back in the queue, due now, run to the end.
    jobs.failing = False
    assert (await operator.retry([queued])).applied == (queued,)
    info = await stored(app, queued)
    assert (info.status, info.finished_at) == (JobStatus.QUEUED, None)
    assert await bounded(worker.run_once()) is True
    assert (await stored(app, queued)).status is JobStatus.DONE
    assert (await stored(app, later)).status is JobStatus.CANCELLED


async def test_requeue_skips_a_dead_letter_whose_dedup_key_is_held(
    app: Soniq, operator: Operator, workers: MakeWorker
) -> None:
    jobs = Jobs(app)
    worker = workers(app)
    [dead] = await jobs.dead_letters(worker, jobs.unique, [{"key": "k"}])
    # The key is free once its holder is dead-lettered, so the same job can be enqueued again.
    live = await app.enqueue(jobs.unique, key="k")
    assert live != dead
    assert await app.enqueue(jobs.unique, key="k") == live, "the live job holds the key"

    for action in (operator.requeue, operator.retry):
        result = await action([dead])
        assert result.applied == ()
        assert result.refused == {dead: operations.KEY_TAKEN}
        assert result.queues == frozenset()
        assert (await stored(app, dead)).status is JobStatus.DEAD_LETTER

    # Once the live job is cancelled, the key is free and the dead letter moves back ...
    assert (await operator.cancel([live])).applied == (live,)
    result = await operator.requeue([dead])
    assert result.applied == (dead,)
    assert result.queues == frozenset({"ops"})
    assert (await stored(app, dead)).status is JobStatus.QUEUED
    assert await app.enqueue(jobs.unique, key="k") == dead, "it holds the key now"
    # ... and the cancelled job cannot come back while it holds it.
    retried = await operator.retry([live])
    assert retried.refused == {live: operations.KEY_TAKEN}
    assert (await stored(app, live)).status is JobStatus.CANCELLED


async def test_of_jobs_sharing_a_dedup_key_one_goes_back(
    app: Soniq, operator: Operator, workers: MakeWorker
) -> None:
    """Two dead letters (or two cancelled jobs) with the same key, sent back together: the one
    with the smaller id goes back, the other is explained; the batch does not fail."""
    jobs = Jobs(app)
    worker = workers(app)
    twins = [
        *await jobs.dead_letters(worker, jobs.unique, [{"key": "twin"}]),
        *await jobs.dead_letters(worker, jobs.unique, [{"key": "twin"}]),
    ]
    first, second = sorted(twins)
    for action in (operator.requeue, operator.retry):
        result = await action([second, first])
        assert result.applied == (first,), action
        assert result.refused == {second: operations.KEY_TAKEN}
        assert (await stored(app, first)).status is JobStatus.QUEUED
        assert (await stored(app, second)).status is JobStatus.DEAD_LETTER
        assert (await operator.cancel([first])).applied == (first,)
        # The cancelled one and the dead letter: retry makes the cancelled job live first.
        result = await operator.retry([second, first])
        assert result.applied == (first,)
        assert result.refused == {second: operations.KEY_TAKEN}
        assert (await operator.cancel([first])).applied == (first,)
        # Send the dead letter back too, so that the next round has two cancelled twins.
        assert (await operator.requeue([second])).applied == (second,)
        assert (await operator.cancel([second])).applied == (second,)
        result = await operator.retry([second, first])
        assert result.applied == (first,)
        assert result.refused == {second: operations.KEY_TAKEN}
        assert (await stored(app, second)).status is JobStatus.CANCELLED
        # Back to two dead letters for the next action.
        jobs.failing = True
        assert await bounded(worker.run_once()) is True
        assert (await operator.retry([second])).applied == (second,)
        assert await bounded(worker.run_once()) is True
        assert [(await stored(app, job_id)).status for job_id in twins] == [
            JobStatus.DEAD_LETTER
        ] * 2


async def test_delete_removes_dead_letters_only(
    app: Soniq, operator: Operator, workers: MakeWorker
) -> None:
    jobs = Jobs(app)
    worker = workers(app)
    dead = await jobs.dead_letters(worker, jobs.flaky, [{"n": n} for n in range(3)])
    queued = await app.enqueue(jobs.flaky, n=9)

    result = await operator.delete([*dead[:2], queued])
    assert sorted(result.applied) == sorted(dead[:2])
    assert result.refused == {queued: "it is not a dead letter (it is queued)"}
    assert result.queues == frozenset()
    for job_id in dead[:2]:
        assert await app.get_job(job_id) is None
    assert (await stored(app, dead[2])).status is JobStatus.DEAD_LETTER
    assert (await stored(app, queued)).status is JobStatus.QUEUED

    again = await operator.delete(dead[:1])
    assert again.refused == {dead[0]: operations.NOT_FOUND}


async def test_unknown_ids_are_explained_by_every_action(app: Soniq, operator: Operator) -> None:
    missing = [unknown(), unknown()]
    for action in (operator.retry, operator.cancel, operator.requeue, operator.delete):
        result = await action(missing)
        assert not result
        assert result.applied == ()
        assert result.refused == dict.fromkeys(missing, operations.NOT_FOUND)
        assert result.queues == frozenset()
        assert (await action([])) == ActionResult()


async def test_large_selections_go_in_batches(
    app: Soniq, operator: Operator, workers: MakeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every backend groups ids with operator_plans.batches; watch the groups it makes.
    groups: list[list[list[str]]] = []
    original = operator_plans.batches

    def watched(job_ids: Sequence[str], size: int | None = None) -> list[list[str]]:
        made = original(job_ids, size)
        groups.append(made)
        return made

    monkeypatch.setattr(operator_plans, "batches", watched)
    monkeypatch.setattr(memory, "batches", watched)
    monkeypatch.setattr(operations, "BATCH_SIZE", 2)

    jobs = Jobs(app)
    worker = workers(app)
    dead = await jobs.dead_letters(worker, jobs.flaky, [{"n": n} for n in range(5)])
    missing = unknown()

    # Duplicates are acted on once, wherever they are.
    result = await operator.requeue([*dead, dead[0], missing, dead[3]])
    assert [len(group) for group in groups[-1]] == [2, 2, 2]
    assert sorted(result.applied) == sorted(dead)
    assert result.refused == {missing: operations.NOT_FOUND}
    assert result.queues == frozenset({"ops"})
    for job_id in dead:
        info = await stored(app, job_id)
        assert (info.status, info.attempts) == (JobStatus.QUEUED, 0)

    result = await operator.cancel(dead)
    assert [len(group) for group in groups[-1]] == [2, 2, 1]
    assert sorted(result.applied) == sorted(dead)
    result = await operator.retry([*dead[:3], missing])
    assert [len(group) for group in groups[-1]] == [2, 2]
    assert sorted(result.applied) == sorted(dead[:3])
    assert result.refused == {missing: operations.NOT_FOUND}
    result = await operator.cancel(dead)
    assert sorted(result.applied) == sorted(dead[:3])
    assert result.refused == dict.fromkeys(
        dead[3:], "it is cancelled; only queued jobs can be cancelled"
    )


async def _registered(worker: Worker) -> bool:
    return await worker.backend.heartbeat(worker.id) == "running"


async def _done(app: Soniq, job_id: str) -> bool:
    info = await app.get_job(job_id)
    return info is not None and info.status is JobStatus.DONE


@pytest.mark.soniq_settings(poll_interval=IDLE_POLL_INTERVAL)
async def test_jobs_sent_back_wake_an_idle_worker(
    app: Soniq, operator: Operator, workers: MakeWorker
) -> None:
    """By NOTIFY on PostgreSQL, in-process elsewhere: either way well before the next poll."""
    assert app.settings.poll_interval == IDLE_POLL_INTERVAL
    jobs = Jobs(app)
    [dead] = await jobs.dead_letters(workers(app), jobs.flaky, [{"n": 3}])
    later = await app.schedule(jobs.flaky, 3600, n=4)
    jobs.failing = False

    worker = workers(app, 2)
    task = asyncio.create_task(worker.run(concurrency=2))
    try:
        await eventually(lambda: task.done() or _registered(worker))
        assert not task.done(), task
        for action, job_id in ((operator.retry, later), (operator.requeue, dead)):
            assert (await action([job_id])).applied == (job_id,)
            await eventually(lambda job_id=job_id: _done(app, job_id), within=WAKE_DEADLINE)
        assert not task.done()
    finally:
        worker.stop()
        await bounded(asyncio.shield(task))
    assert task.result() is True
    assert [(await stored(app, job_id)).result for job_id in (dead, later)] == [3, 4]

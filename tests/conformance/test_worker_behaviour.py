"""What a worker does with the stored jobs: the same outcomes on every backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from soniq import Discard, JobContext, JobInfo, JobStatus, Retry, Soniq
from soniq.backends.base import WorkerBackend
from soniq.core.status import Suspicion
from soniq.worker import Worker
from tests.conformance.conftest import (
    CONFORMANCE,
    backend_name,
    bounded,
    eventually,
    lacks,
    requires,
    worker_info,
)

pytestmark = [CONFORMANCE, pytest.mark.asyncio]

MakeWorker = Callable[..., Worker]

# A continuous worker must take a job enqueued while it idles well before its next poll.
WAKE_DEADLINE = 5.0
IDLE_POLL_INTERVAL = 30.0


async def stored(app: Soniq, job_id: str) -> JobInfo:
    info = await app.get_job(job_id)
    assert info is not None, f"{backend_name(app)}: job {job_id} not found"
    return info


async def once(app: Soniq, **kwargs: Any) -> bool:
    return await bounded(app.run_worker(run_once=True, **kwargs))


async def test_run_once_runs_due_jobs_lowest_priority_number_first(app: Soniq) -> None:
    order: list[str] = []

    @app.job(name="conf.record")
    async def record(label: str) -> None:
        order.append(label)

    assert await once(app) is False, "nothing to run yet"
    past = datetime.now(UTC) - timedelta(minutes=5)
    for label, priority in [("p50", 50), ("p5", 5), ("p1000", 1000), ("p1", 1), ("p100", 100)]:
        await app.enqueue(record, label=label, priority=priority, scheduled_at=past)
    # Equal priority: the earlier scheduled_at first (enqueued in the other order).
    await app.enqueue(record, label="p7-later", priority=7, scheduled_at=past)
    await app.enqueue(record, label="p7-earlier", priority=7, scheduled_at=past - timedelta(1))
    future = await app.schedule(record, 3600, args=None, label="future", priority=1)
    expected = ["p1", "p5", "p7-earlier", "p7-later", "p50", "p100", "p1000"]

    assert await once(app) is True
    assert order == expected
    info = await stored(app, future)
    assert (info.status, info.attempts, info.worker_id) == (JobStatus.QUEUED, 0, None)
    assert await once(app) is False, "only the future job is left"
    assert order == expected


async def test_run_once_respects_queues_and_max_jobs(app: Soniq, workers: MakeWorker) -> None:
    ran: list[str] = []

    @app.job(name="conf.tick")
    async def tick(label: str) -> str:
        ran.append(label)
        return label

    in_a = await app.enqueue_many(tick, [{"label": f"a{n}"} for n in range(3)], queue="a")
    in_b = await app.enqueue_many(tick, [{"label": f"b{n}"} for n in range(2)], queue="b")
    worker = workers(app)

    assert await bounded(worker.run_once(queues=["b"])) is True
    assert sorted(ran) == ["b0", "b1"]
    assert [(await stored(app, job_id)).status for job_id in in_b] == [JobStatus.DONE] * 2
    assert [(await stored(app, job_id)).status for job_id in in_a] == [JobStatus.QUEUED] * 3
    assert await bounded(worker.run_once(queues=["b", "c"])) is False

    assert await bounded(worker.run_once(max_jobs=2)) is True
    assert len(ran) == 4
    statuses = [(await stored(app, job_id)).status for job_id in in_a]
    assert sorted(statuses) == [JobStatus.DONE, JobStatus.DONE, JobStatus.QUEUED]

    assert await bounded(worker.run_once()) is True
    assert sorted(ran) == ["a0", "a1", "a2", "b0", "b1"]
    assert await bounded(worker.run_once()) is False


async def test_results_are_stored_as_json_and_read_back(app: Soniq) -> None:
    values: dict[str, Any] = {
        "object": {"name": "Zoë ✓", "items": [1, 2.5, True, None, {"deep": ["x"]}], "n": -7},
        "list": [3, "three", [3.0]],
        "text": "plain",
        "integer": 2**40,
        "float": 0.1,
        "false": False,
        "none": None,
    }

    @app.job(name="conf.give")
    async def give(kind: str) -> Any:
        return values[kind]

    ids = {kind: await app.enqueue(give, kind=kind) for kind in values}
    assert await once(app) is True
    for kind, job_id in ids.items():
        info = await stored(app, job_id)
        assert info.status is JobStatus.DONE
        assert info.result == values[kind], kind
        assert type(info.result) is type(values[kind]), kind
        assert info.attempts == 1 and info.errors == []
        assert info.started_at is not None and info.finished_at is not None
        assert info.finished_at >= info.started_at


async def test_floats_stay_floats_in_arguments_and_results(app: Soniq) -> None:
    """A float written in exponent form by JSON (1e+20) is still a float when read back."""
    received: list[Any] = []

    @app.job(name="conf.floats")
    async def floats(x: float) -> dict[str, float]:
        received.append(x)
        return {"same": x, "doubled": x * 2}

    job_id = await app.enqueue(floats, x=1e20)
    stored_args = (await stored(app, job_id)).args["x"]
    assert await once(app) is True
    result = (await stored(app, job_id)).result
    kinds = {
        "stored argument": type(stored_args),
        "argument the job received": type(received[0]),
        "result['same']": type(result["same"]),
        "result['doubled']": type(result["doubled"]),
    }
    assert kinds == dict.fromkeys(kinds, float), f"{backend_name(app)}: {kinds}"
    assert result == {"same": 1e20, "doubled": 2e20}


async def test_job_context_is_filled_in(app: Soniq, workers: MakeWorker) -> None:
    seen: list[JobContext] = []

    @app.job(name="conf.context", queue="ctx", retries=4)
    async def with_context(value: int, ctx: JobContext) -> int:
        seen.append(ctx)
        return value

    scheduled = (datetime.now(UTC) - timedelta(minutes=3)).replace(microsecond=654321)
    job_id = await app.enqueue(with_context, value=5, scheduled_at=scheduled)
    worker = workers(app)
    assert await bounded(worker.run_once()) is True

    [ctx] = seen
    info = await stored(app, job_id)
    assert info.status is JobStatus.DONE and info.result == 5
    assert ctx.job_id == job_id
    assert ctx.job_name == "conf.context"
    assert (ctx.attempt, ctx.max_attempts) == (1, 5)
    assert ctx.queue == "ctx"
    assert ctx.worker_id == worker.id == info.worker_id
    assert ctx.scheduled_at == scheduled == info.scheduled_at
    assert ctx.created_at is not None and ctx.created_at == info.created_at
    assert ctx.created_at.utcoffset() == timedelta(0)


async def test_retries_without_delay_run_again_until_success(app: Soniq) -> None:
    calls: list[int] = []

    @app.job(name="conf.flaky", retries=3, retry_delay=0)
    async def flaky(ctx: JobContext) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"boom {ctx.attempt}")
        return "finally"

    job_id = await app.enqueue(flaky)
    assert await once(app) is True, "one run_once retries until success"
    assert calls == [1, 2, 3]
    info = await stored(app, job_id)
    assert info.status is JobStatus.DONE
    assert (info.attempts, info.max_attempts, info.result) == (3, 4, "finally")
    assert [error["attempt"] for error in info.errors] == [1, 2]
    assert [error["error_type"] for error in info.errors] == ["builtins.RuntimeError"] * 2
    assert [error["message"] for error in info.errors] == ["boom 1", "boom 2"]
    assert info.dead_letter_reason is None


async def test_a_job_that_always_fails_is_dead_lettered(app: Soniq, workers: MakeWorker) -> None:
    calls: list[int] = []

    @app.job(name="conf.doomed", retries=2, retry_delay=0)
    async def doomed(n: int, ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        raise ValueError(f"bad input {n} (attempt {ctx.attempt})")

    job_id = await app.enqueue(doomed, n=4)
    worker = workers(app)
    assert await bounded(worker.run_once()) is True
    assert calls == [1, 2, 3]
    info = await stored(app, job_id)
    assert info.status is JobStatus.DEAD_LETTER
    assert info.dead_letter_reason == "max_attempts"
    assert (info.task_name, info.args) == ("conf.doomed", {"n": 4})
    assert (info.attempts, info.max_attempts) == (3, 3)
    assert info.result is None
    assert info.worker_id == worker.id
    assert info.started_at is not None and info.finished_at is not None
    assert info.finished_at >= info.started_at
    assert len(info.errors) == 3, "one error per attempt"
    for attempt, error in enumerate(info.errors, start=1):
        assert error["attempt"] == attempt
        assert error["error_type"] == "builtins.ValueError"
        assert error["message"] == f"bad input 4 (attempt {attempt})"
        assert "Traceback" in error["traceback"] and "in doomed" in error["traceback"]
        assert "ValueError: bad input 4" in error["traceback"]
    assert info.last_error == info.errors[-1]
    assert await bounded(worker.run_once()) is False, "a dead letter is not claimed again"


async def test_only_the_errors_a_job_may_retry_are_retried(app: Soniq, workers: MakeWorker) -> None:
    calls: list[tuple[str, int]] = []

    class PartnerDown(ConnectionError):
        pass

    @app.job(name="conf.partner", retries=3, retry_delay=0, retry_on=ConnectionError)
    async def partner(fail_with: str, ctx: JobContext) -> str:
        calls.append(("partner", ctx.attempt))
        if ctx.attempt == 1:
            raise PartnerDown("partner down")  # a ConnectionError: retried
        if fail_with == "value":
            raise ValueError("bad reply")  # not a ConnectionError: dead-lettered at once
        return "sent"

    @app.job(name="conf.strict", retries=3, retry_delay=0, no_retry_on=[KeyError])
    def strict(ctx: JobContext) -> None:
        calls.append(("strict", ctx.attempt))
        raise KeyError("no such customer")

    sent = await app.enqueue(partner, fail_with="none")
    refused = await app.enqueue(partner, fail_with="value")
    missing = await app.enqueue(strict)
    worker = workers(app)
    assert await bounded(worker.run_once()) is True
    assert sorted(calls) == [
        ("partner", 1),
        ("partner", 1),
        ("partner", 2),
        ("partner", 2),
        ("strict", 1),
    ]
    assert (await stored(app, sent)).status is JobStatus.DONE
    for job_id, attempts, error_type in [
        (refused, 2, "builtins.ValueError"),
        (missing, 1, "builtins.KeyError"),
    ]:
        info = await stored(app, job_id)
        assert info.status is JobStatus.DEAD_LETTER
        assert info.dead_letter_reason == "not_retryable", "attempts were left"
        assert (info.attempts, info.max_attempts) == (attempts, 4)
        assert info.errors[-1]["error_type"] == error_type


async def test_a_job_chooses_its_retry_time_or_its_discard(app: Soniq, workers: MakeWorker) -> None:
    calls: list[tuple[str, int]] = []

    @app.job(name="conf.later", retries=2, retry_delay=0, no_retry_on=Exception)
    async def later(wait: float, ctx: JobContext) -> str:
        calls.append(("later", ctx.attempt))
        if ctx.attempt == 1:
            # Overrides retry_delay, and no_retry_on: the job asked for it.
            raise Retry(delay=timedelta(seconds=wait), reason="partner busy")
        return "sent"

    @app.job(name="conf.stubborn", retries=1)
    async def stubborn(ctx: JobContext) -> None:
        calls.append(("stubborn", ctx.attempt))
        raise Retry(0)  # every attempt: the last one dead-letters it

    @app.job(name="conf.discard", retries=5)
    def discard(ctx: JobContext) -> None:
        calls.append(("discard", ctx.attempt))
        raise Discard("customer 42 closed the account")

    now_ish = datetime.now(UTC)
    soon = await app.enqueue(later, wait=0)
    far = await app.enqueue(later, wait=3600)
    tries = await app.enqueue(stubborn)
    dropped = await app.enqueue(discard)
    worker = workers(app)
    assert await bounded(worker.run_once()) is True
    assert sorted(calls) == [
        ("discard", 1),
        ("later", 1),
        ("later", 1),
        ("later", 2),
        ("stubborn", 1),
        ("stubborn", 2),
    ]
    done = await stored(app, soon)
    assert (done.status, done.attempts, done.result) == (JobStatus.DONE, 2, "sent")
    assert done.errors[0]["error_type"] == "soniq.core.control.Retry"
    assert done.errors[0]["message"] == "partner busy"
    waiting = await stored(app, far)
    assert (waiting.status, waiting.attempts) == (JobStatus.QUEUED, 1)
    assert waiting.scheduled_at is not None
    assert timedelta(minutes=59) < waiting.scheduled_at - now_ish < timedelta(minutes=61)
    out = await stored(app, tries)
    assert (out.status, out.dead_letter_reason, out.attempts) == (
        JobStatus.DEAD_LETTER,
        "max_attempts",
        2,
    )
    gone = await stored(app, dropped)
    assert (gone.status, gone.dead_letter_reason, gone.attempts) == (
        JobStatus.DEAD_LETTER,
        "discarded",
        1,
    )
    assert gone.errors[-1]["message"] == "customer 42 closed the account"


async def _picked_up_while_idle(app: Soniq, workers: MakeWorker) -> float:
    """Start a continuous worker, let it go idle, enqueue; seconds until the job is done."""
    assert app.settings.poll_interval == IDLE_POLL_INTERVAL

    @app.job(name="conf.wake")
    async def wake(n: int) -> int:
        return n

    worker = workers(app, 2)
    task = asyncio.create_task(worker.run(concurrency=2))
    try:
        # Registered means idle and listening: the session (LISTEN) and the in-process
        # subscription are set up before the worker row is written.
        await eventually(lambda: task.done() or _registered(worker))
        assert not task.done(), task
        started = time.monotonic()
        job_id = await app.enqueue(wake, n=11)
        await eventually(lambda: _done(app, job_id), within=WAKE_DEADLINE)
        elapsed = time.monotonic() - started
        assert not task.done()
    finally:
        worker.stop()
        await bounded(asyncio.shield(task))
    assert task.result() is True
    assert (await stored(app, job_id)).result == 11
    assert await worker.backend.heartbeat(worker.id) == "stopped"
    return elapsed


async def _registered(worker: Worker) -> bool:
    return await worker.backend.heartbeat(worker.id) == "running"


async def _done(app: Soniq, job_id: str) -> bool:
    info = await app.get_job(job_id)
    return info is not None and info.status is JobStatus.DONE


@pytest.mark.soniq_settings(poll_interval=IDLE_POLL_INTERVAL)
async def test_an_idle_worker_is_woken_by_listen(app: Soniq, workers: MakeWorker) -> None:
    requires(app, "supports_listen")
    assert await _picked_up_while_idle(app, workers) < WAKE_DEADLINE


@pytest.mark.soniq_settings(poll_interval=IDLE_POLL_INTERVAL)
async def test_an_idle_worker_is_woken_in_process(app: Soniq, workers: MakeWorker) -> None:
    lacks(app, "supports_listen", "its workers are woken by NOTIFY (see the LISTEN test)")
    assert await _picked_up_while_idle(app, workers) < WAKE_DEADLINE


async def test_a_stale_worker_s_jobs_are_recovered_by_what_it_did_with_them(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    """A dead worker's running job is charged (attempt, lost worker, error) and runs alone
    next time; a job it had only claimed goes back uncharged, its start to be written first.
    Both keep their place in the queue."""

    @app.job(name="conf.stale")
    async def stale(n: int) -> None:
        return None

    ran_id = await app.enqueue(stale, n=1)
    held_id = await app.enqueue(stale, n=2)
    scheduled = {job_id: (await stored(app, job_id)).scheduled_at for job_id in (ran_id, held_id)}
    silent = worker_info(("conf.stale",))
    await worker_backend.register_worker(silent, None)
    claimed = await worker_backend.claim_jobs(silent.id, ["conf.stale"], None, 5)
    assert {(job.id, job.attempt, job.claimed_by) for job in claimed} == {
        (ran_id, 1, silent.id),
        (held_id, 1, silent.id),
    }
    held = await stored(app, held_id)
    assert (held.status, held.worker_id, held.attempts) == (JobStatus.PROCESSING, silent.id, 1)
    assert held.started_at is None, "claimed, not started"
    assert await worker_backend.start_jobs(silent.id, [(ran_id, 1)]) == 1
    started_at = (await stored(app, ran_id)).started_at
    assert await worker_backend.start_jobs(silent.id, [(ran_id, 1)]) == 1, "idempotent"
    assert (await stored(app, ran_id)).started_at == started_at, "the first start is kept"
    assert (await stored(app, ran_id)).started_at is not None

    # A generous timeout recovers nothing: the worker is alive.
    report = await worker_backend.recover_stale_workers(
        heartbeat_timeout=3600, lock_grace=3600, max_losses=3
    )
    assert (report.dead_workers, report.requeued, report.released) == ((), 0, 0)
    assert (await stored(app, ran_id)).status is JobStatus.PROCESSING

    # heartbeat_timeout=0: any heartbeat in the past is too old, so the worker is silent.
    async def found_dead() -> Any:
        report = await worker_backend.recover_stale_workers(
            heartbeat_timeout=0, lock_grace=3600, max_losses=3
        )
        return report if silent.id in report.dead_workers else None

    report = await eventually(found_dead)
    assert report.dead_workers == (silent.id,)
    assert (report.requeued, report.released, report.dead_lettered) == (1, 1, 0)

    ran = await stored(app, ran_id)
    assert (ran.status, ran.worker_id, ran.started_at) == (JobStatus.QUEUED, None, None)
    assert ran.attempts == 1, "the lost run counts as an attempt"
    [lost] = ran.errors
    assert lost["error_type"] == "soniq.WorkerLost"
    assert (lost["attempt"], lost["worker_id"]) == (1, silent.id)
    held = await stored(app, held_id)
    assert (held.status, held.worker_id, held.attempts, held.errors) == (
        JobStatus.QUEUED,
        None,
        0,
        [],
    ), "a job only claimed is not charged"
    for job_id in (ran_id, held_id):
        assert (await stored(app, job_id)).scheduled_at == scheduled[job_id], "keeps its place"
    assert await worker_backend.heartbeat(silent.id) == "dead"
    # A dead row stays dead: registering the same id again does not revive it.
    await worker_backend.register_worker(silent, None)
    assert await worker_backend.heartbeat(silent.id) == "dead"

    # The silent worker's late outcome is refused, and it cannot take the job back under its
    # old id (its stale run's completion would then pass the fence); a live worker can.
    assert await worker_backend.complete_jobs(silent.id, [(ran_id, 1, '"late"')]) == 0
    assert await worker_backend.claim_jobs(silent.id, ["conf.stale"], None, 5) == []
    live = worker_info(("conf.stale",))
    await worker_backend.register_worker(live, None)
    again = {
        job.id: job for job in await worker_backend.claim_jobs(live.id, ["conf.stale"], None, 5)
    }
    assert (again[ran_id].attempt, again[ran_id].suspicion) == (2, Suspicion.LOST_WHILE_RUNNING)
    assert again[ran_id].runs_alone
    assert (again[held_id].attempt, again[held_id].suspicion) == (1, Suspicion.UNCONFIRMED_START)
    assert not again[held_id].runs_alone
    # Writing the start clears the suspicion; the job then completes as usual.
    assert await worker_backend.start_jobs(live.id, [(ran_id, 2), (held_id, 1)]) == 2
    assert await worker_backend.complete_jobs(live.id, [(ran_id, 2, None), (held_id, 1, None)]) == 2
    assert (await stored(app, ran_id)).status is JobStatus.DONE


async def test_a_job_lost_on_its_last_attempt_is_dead_lettered(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    @app.job(name="conf.last_try", retries=0)
    async def last_try() -> None:
        return None

    job_id = await app.enqueue(last_try)
    silent = worker_info(("conf.last_try",))
    await worker_backend.register_worker(silent, None)
    await worker_backend.claim_jobs(silent.id, ["conf.last_try"], None, 1)
    await worker_backend.start_jobs(silent.id, [(job_id, 1)])
    await worker_backend.deregister_worker(silent.id)  # its jobs are recovered at once
    report = await worker_backend.recover_stale_workers(
        heartbeat_timeout=3600, lock_grace=3600, max_losses=3
    )
    assert (report.requeued, report.dead_lettered) == (0, 1)
    info = await stored(app, job_id)
    assert (info.status, info.dead_letter_reason, info.attempts) == (
        JobStatus.DEAD_LETTER,
        "max_attempts",
        1,
    )
    assert info.errors[-1]["error_type"] == "soniq.WorkerLost"


async def test_a_stopped_worker_claims_nothing(app: Soniq, worker_backend: WorkerBackend) -> None:
    @app.job(name="conf.after_stop")
    async def after_stop() -> None:
        return None

    job_id = await app.enqueue(after_stop)
    stopped = worker_info(("conf.after_stop",))
    await worker_backend.register_worker(stopped, None)
    await worker_backend.deregister_worker(stopped.id)
    assert await worker_backend.claim_jobs(stopped.id, ["conf.after_stop"], None, 5) == []
    fresh = worker_info(("conf.after_stop",))
    await worker_backend.register_worker(fresh, None)
    [claimed] = await worker_backend.claim_jobs(fresh.id, ["conf.after_stop"], None, 5)
    assert claimed.id == job_id

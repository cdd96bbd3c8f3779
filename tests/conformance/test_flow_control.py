"""Flow control on every backend: locks, concurrency limits and rate limits, enforced by the
claim (the plain claim for locks, the limited claim for limits)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from soniq import InvalidOptionError, JobDefinitionError, JobStatus, Soniq
from soniq.backends.base import WorkerBackend
from soniq.core.limits import ClaimLimits
from soniq.worker import Worker
from soniq.worker.claiming import task_limits
from tests.conformance.conftest import (
    ALIASES,
    CONFORMANCE,
    backend_name,
    bounded,
    eventually,
    leftovers,
    worker_info,
)

pytestmark = [CONFORMANCE, pytest.mark.asyncio]


def request_kind(app: Soniq) -> str:
    return {"MemoryBackend": "memory", "SQLiteBackend": "sqlite"}.get(backend_name(app), "postgres")


def limits_of(app: Soniq, queues: tuple[str, ...] | None = None) -> ClaimLimits:
    names = app.registry.names()
    return ClaimLimits.build(names, task_limits(app.registry), app.settings.queue_limits, queues)


async def claim(backend: WorkerBackend, worker_id: str, names: list[str], n: int = 10) -> list[str]:
    return [job.id for job in await backend.claim_jobs(worker_id, names, None, n)]


async def finish(backend: WorkerBackend, worker_id: str, job_ids: list[str]) -> None:
    assert await backend.complete_jobs(worker_id, [(job_id, 1, None) for job_id in job_ids]) == len(
        job_ids
    )


# -- locks --------------------------------------------------------------------------------------


async def test_jobs_sharing_a_lock_are_claimed_one_at_a_time_in_order(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    @app.job(name="flow.sync_customer")
    async def sync_customer(step: int) -> None:
        return None

    first = await app.enqueue(sync_customer, step=1, lock="customer:42")
    second = await sync_customer.using(lock="customer:42").aenqueue(step=2)
    other = await app.enqueue(sync_customer, step=1, lock="customer:7")
    free = await app.enqueue(sync_customer, step=0)
    # More urgent: ahead of the second, not of the running first.
    urgent = await app.enqueue(sync_customer, step=3, lock="customer:42", priority=1)
    assert (await app.get_job(first)).lock == "customer:42"  # type: ignore[union-attr]

    worker = worker_info(("flow.sync_customer",))
    await worker_backend.register_worker(worker, None)
    names = ["flow.sync_customer"]
    # The urgent one is first of its lock (priority first): it goes, the others of the lock wait.
    assert set(await claim(worker_backend, worker.id, names)) == {urgent, other, free}
    assert await claim(worker_backend, worker.id, names) == [], "the lock is held"
    await finish(worker_backend, worker.id, [urgent])
    assert await claim(worker_backend, worker.id, names) == [first]
    assert await claim(worker_backend, worker.id, names) == []
    await finish(worker_backend, worker.id, [first])
    assert await claim(worker_backend, worker.id, names) == [second]


async def test_a_lock_waits_for_a_job_ahead_that_is_not_due_yet(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    """A retried job keeps its place: the jobs behind it wait for its retry."""

    @app.job(name="flow.ordered")
    async def ordered(step: int) -> None:
        return None

    first = await app.enqueue(ordered, step=1, lock="account:1")
    second = await app.enqueue(ordered, step=2, lock="account:1")
    worker = worker_info(("flow.ordered",))
    await worker_backend.register_worker(worker, None)
    assert await claim(worker_backend, worker.id, ["flow.ordered"]) == [first]
    error = {"attempt": 1, "error_type": "ValueError", "message": "x", "traceback": ""}
    assert await worker_backend.retry_job(worker.id, first, 1, 3600, error)
    assert await claim(worker_backend, worker.id, ["flow.ordered"]) == [], "first retries first"
    assert (await app.get_job(second)).status is JobStatus.QUEUED  # type: ignore[union-attr]


async def test_a_lock_held_by_a_dead_worker_is_freed_by_recovery(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    @app.job(name="flow.recovered")
    async def recovered(step: int) -> None:
        return None

    first = await app.enqueue(recovered, step=1, lock="report")
    second = await app.enqueue(recovered, step=2, lock="report")
    dead = worker_info(("flow.recovered",))
    await worker_backend.register_worker(dead, None)
    assert await claim(worker_backend, dead.id, ["flow.recovered"]) == [first]
    await worker_backend.deregister_worker(dead.id)  # gone: its jobs are recovered

    async def recovered_back() -> bool:
        await worker_backend.recover_stale_workers(heartbeat_timeout=0, lock_grace=0, max_losses=3)
        info = await app.get_job(first)
        return info is not None and info.status is JobStatus.QUEUED

    await eventually(recovered_back)
    alive = worker_info(("flow.recovered",))
    await worker_backend.register_worker(alive, None)
    assert await claim(worker_backend, alive.id, ["flow.recovered"]) == [first]
    await finish(worker_backend, alive.id, [first])
    assert await claim(worker_backend, alive.id, ["flow.recovered"]) == [second]


async def test_a_dead_letter_frees_its_lock_and_keeps_it_when_requeued(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    @app.job(name="flow.poison")
    async def poison(step: int) -> None:
        return None

    first = await app.enqueue(poison, step=1, lock="tenant:3")
    second = await app.enqueue(poison, step=2, lock="tenant:3")
    worker = worker_info(("flow.poison",))
    await worker_backend.register_worker(worker, None)
    assert await claim(worker_backend, worker.id, ["flow.poison"]) == [first]
    error = {"attempt": 1, "error_type": "ValueError", "message": "x", "traceback": ""}
    assert await worker_backend.dead_letter_job(worker.id, first, 1, error, "max_attempts")
    dead = await app.get_job(first)
    assert dead is not None and (dead.status, dead.lock) == (JobStatus.DEAD_LETTER, "tenant:3")
    assert await claim(worker_backend, worker.id, ["flow.poison"]) == [second]
    await app.requeue_dead_letters([first])
    requeued = await app.get_job(first)
    assert requeued is not None and requeued.lock == "tenant:3"
    assert await claim(worker_backend, worker.id, ["flow.poison"]) == [], "second still runs"
    await finish(worker_backend, worker.id, [second])
    assert await claim(worker_backend, worker.id, ["flow.poison"]) == [first]


async def test_enqueue_many_with_a_lock_keeps_the_list_order(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    @app.job(name="flow.step")
    async def step(n: int) -> None:
        return None

    ids = await app.enqueue_many(step, [{"n": n} for n in range(4)], lock="pipeline")
    worker = worker_info(("flow.step",))
    await worker_backend.register_worker(worker, None)
    for job_id in ids:
        assert await claim(worker_backend, worker.id, ["flow.step"]) == [job_id]
        await finish(worker_backend, worker.id, [job_id])


# -- limits -------------------------------------------------------------------------------------


async def test_a_concurrency_limit_caps_running_jobs_of_the_task(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    @app.job(name="flow.partner_call", concurrency_limit=2)
    async def partner_call(n: int) -> None:
        return None

    @app.job(name="flow.plain")
    async def plain(n: int) -> None:
        return None

    ids = [await app.enqueue(partner_call, n=n) for n in range(4)]
    plain_id = await app.enqueue(plain, n=0)
    limits = limits_of(app)
    assert limits.plain_tasks == ("flow.plain",)
    first, second = worker_info(("flow.partner_call",)), worker_info(("flow.partner_call",))
    for worker in (first, second):
        await worker_backend.register_worker(worker, None)
    taken = await worker_backend.claim_limited_jobs(first.id, limits, 10)  # type: ignore[attr-defined]
    assert [job.id for job in taken.jobs] == ids[:2]
    assert taken.retry_after is None
    again = await worker_backend.claim_limited_jobs(second.id, limits, 10)  # type: ignore[attr-defined]
    assert again.jobs == [], "two running: the limit holds across workers"
    # The plain claim leaves the limited task to the limited claim.
    assert await claim(worker_backend, second.id, list(limits.plain_tasks)) == [plain_id]
    await finish(worker_backend, first.id, [ids[0]])
    freed = await worker_backend.claim_limited_jobs(second.id, limits, 10)  # type: ignore[attr-defined]
    assert [job.id for job in freed.jobs] == [ids[2]]


@pytest.mark.soniq_settings(queue_limits={"partner": {"concurrency": 1}})
async def test_a_queue_limit_covers_every_task_in_the_queue_without_blocking_others(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    @app.job(name="flow.a", queue="partner")
    async def a(n: int) -> None:
        return None

    @app.job(name="flow.b", concurrency_limit=5)
    async def b(n: int) -> None:
        return None

    in_partner = [await app.enqueue(a, n=1), await app.enqueue(b, n=1, queue="partner")]
    elsewhere = await app.enqueue(b, n=2)
    limits = limits_of(app)
    assert limits.limited_queues == ("partner",)
    worker = worker_info(("flow.a", "flow.b"))
    await worker_backend.register_worker(worker, None)
    taken = await worker_backend.claim_limited_jobs(worker.id, limits, 10)  # type: ignore[attr-defined]
    # One of the queue (the first), and b's job outside it: the full queue blocks nothing else.
    assert [job.id for job in taken.jobs] == [in_partner[0], elsewhere]
    again = await worker_backend.claim_limited_jobs(worker.id, limits, 10)  # type: ignore[attr-defined]
    assert again.jobs == [], "the queue's one slot is taken"
    assert (await app.get_job(in_partner[1])).status is JobStatus.QUEUED  # type: ignore[union-attr]


async def test_a_full_limit_passes_its_jobs_over_for_the_next_limited_ones(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    @app.job(name="flow.narrow", concurrency_limit=1, priority=1)
    async def narrow(n: int) -> None:
        return None

    @app.job(name="flow.wide", concurrency_limit=10, priority=50)
    async def wide(n: int) -> None:
        return None

    narrow_ids = [await app.enqueue(narrow, n=n) for n in range(5)]
    wide_ids = [await app.enqueue(wide, n=n) for n in range(3)]
    worker = worker_info(("flow.narrow", "flow.wide"))
    await worker_backend.register_worker(worker, None)
    taken = await worker_backend.claim_limited_jobs(worker.id, limits_of(app), 4)  # type: ignore[attr-defined]
    assert [job.id for job in taken.jobs] == [narrow_ids[0], *wide_ids]


async def test_a_rate_limit_caps_starts_in_its_window(
    app: Soniq, worker_backend: WorkerBackend
) -> None:
    @app.job(name="flow.rated", rate_limit="3/m")
    async def rated(n: int) -> None:
        return None

    ids = [await app.enqueue(rated, n=n) for n in range(5)]
    worker = worker_info(("flow.rated",))
    await worker_backend.register_worker(worker, None)
    limits = limits_of(app)
    taken = await worker_backend.claim_limited_jobs(worker.id, limits, 2)  # type: ignore[attr-defined]
    assert [job.id for job in taken.jobs] == ids[:2]
    assert taken.retry_after is None, "one start left in the window"
    await finish(worker_backend, worker.id, ids[:2])
    taken = await worker_backend.claim_limited_jobs(worker.id, limits, 5)  # type: ignore[attr-defined]
    assert [job.id for job in taken.jobs] == [ids[2]], "finished jobs still count: starts do"
    assert taken.retry_after is not None and 55 < taken.retry_after <= 60
    empty = await worker_backend.claim_limited_jobs(worker.id, limits, 5)  # type: ignore[attr-defined]
    assert empty.jobs == [] and empty.retry_after is not None and empty.retry_after <= 60


async def test_a_worker_keeps_a_limited_task_at_its_limit(
    app: Soniq, workers: Callable[..., Worker]
) -> None:
    running = 0
    most = 0

    @app.job(name="flow.busy", concurrency_limit=2)
    async def busy(n: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1

    ids = await app.enqueue_many(busy, [{"n": n} for n in range(12)])
    worker = workers(app)
    task = asyncio.create_task(worker.run(concurrency=6))

    async def all_done() -> bool:
        infos = [await app.get_job(job_id) for job_id in ids]
        return all(info is not None and info.status is JobStatus.DONE for info in infos)

    try:
        await eventually(all_done)
    finally:
        worker.stop()
        await bounded(asyncio.shield(task))
    assert most == 2, f"{backend_name(app)}: up to {most} ran at once"


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"rate_limit": "ten per sec"}, "rate_limit"),
        ({"rate_limit": "0/s"}, "rate_limit"),
        ({"rate_limit": 10}, "rate_limit"),
        ({"concurrency_limit": -1}, "concurrency_limit"),
        ({"concurrency_limit": 0}, "concurrency_limit"),
        ({"concurrency_limit": 2.5}, "concurrency_limit"),
    ],
)
async def test_bad_limits_are_refused_at_decoration(
    app: Soniq, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(JobDefinitionError, match=named):

        @app.job(name="flow.bad", **options)
        async def bad() -> None:
            return None

    assert app.registry.get("flow.bad") is None


@pytest.mark.parametrize("lock", [42, "", "x" * 256, "nul\x00byte", b"bytes"])
async def test_a_bad_lock_is_refused_at_enqueue_and_nothing_is_written(
    app: Soniq, lock: Any
) -> None:
    @app.job(name="flow.locked")
    async def locked() -> None:
        return None

    with pytest.raises(InvalidOptionError, match="lock") as raised:
        await app.enqueue(locked, lock=lock)
    assert raised.value.argument == "lock"
    with pytest.raises(InvalidOptionError, match="lock"):
        locked.using(lock=lock)
    with pytest.raises(InvalidOptionError, match="lock"):
        await app.enqueue_many(locked, [{}], lock=lock)
    alias = ALIASES[request_kind(app)]
    if alias is None:
        assert app.backend.jobs() == []  # type: ignore[attr-defined]
    else:
        assert leftovers(alias) == {}

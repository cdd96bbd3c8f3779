"""One timer for every running job's time limit (soniq.worker.deadlines)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from soniq.worker.deadlines import Deadlines


async def _limited(deadlines: Deadlines, seconds: float, work: asyncio.Future[str]) -> str:
    deadline = deadlines.arm(seconds)
    try:
        return await work
    except asyncio.CancelledError:
        if deadlines.release(deadline):
            raise TimeoutError from None
        raise
    finally:
        deadlines.release(deadline)


@pytest.mark.asyncio
async def test_each_job_expires_at_its_own_deadline_in_any_arming_order() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    never: list[asyncio.Future[str]] = [loop.create_future() for _ in range(3)]
    # Armed latest-deadline first: each earlier deadline must move the timer forward.
    tasks = [
        asyncio.create_task(_limited(deadlines, seconds, work))
        for seconds, work in zip((0.3, 0.2, 0.1), never, strict=True)
    ]
    began = loop.time()
    ended: dict[int, float] = {}

    def noter(index: int) -> Callable[[object], object]:
        return lambda _: ended.setdefault(index, loop.time() - began)

    for index, task in enumerate(tasks):
        task.add_done_callback(noter(index))
    for task in tasks:
        with pytest.raises(TimeoutError):
            await task
    # Never early, and in deadline order: the 0.1 s job did not wait for the 0.3 s timer.
    assert ended[2] >= 0.1 and ended[1] >= 0.2 and ended[0] >= 0.3
    assert ended[2] < ended[1] < ended[0]


@pytest.mark.asyncio
async def test_a_job_that_ends_in_time_is_never_cancelled() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    work: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.01, work.set_result, "done")
    assert await _limited(deadlines, 0.05, work) == "done"
    # The released deadline's time passes: nothing is cancelled.
    bystander: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.1, bystander.set_result, "still here")
    assert await _limited(deadlines, 1.0, bystander) == "still here"


@pytest.mark.asyncio
async def test_a_cancellation_from_elsewhere_is_not_taken_for_a_timeout() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(_limited(deadlines, 0.05, loop.create_future()))
    await asyncio.sleep(0)
    task.cancel()  # the worker stopping, before the deadline
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.asyncio
async def test_released_entries_do_not_pile_up_under_a_long_timeout() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    for _ in range(10_000):
        done: asyncio.Future[str] = loop.create_future()
        done.set_result("ok")
        await _limited(deadlines, 300.0, done)
    assert len(deadlines._heap) <= 64

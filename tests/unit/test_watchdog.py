"""The loop-stall watchdog: one warning per stall, naming the jobs and the blocking call."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from soniq.worker.watchdog import THREAD_NAME, LoopWatchdog
from tests.helpers import eventually

THRESHOLD = 0.2
# Long enough past the threshold that the watchdog, checking every THRESHOLD / 4, sees it.
STALL = 0.5


def block_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # the mistake the watchdog is for: blocking inside async code


def stay_under_threshold() -> None:
    time.sleep(THRESHOLD / 2)


async def stubborn_job() -> None:
    block_the_loop(STALL)


def watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


def messages(caplog: pytest.LogCaptureFixture, containing: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "soniq.worker"
        and r.levelno == logging.WARNING
        and containing in r.getMessage()
    ]


@pytest.fixture
def make_watchdog() -> Iterator[Callable[..., LoopWatchdog]]:
    """``make_watchdog(describe=..., threshold=...)``; every watchdog made is stopped after."""
    made: list[LoopWatchdog] = []

    def make(
        describe: Callable[[], list[str]] = lambda: ["send_email (job-1)"],
        threshold: float = THRESHOLD,
    ) -> LoopWatchdog:
        watchdog = LoopWatchdog(threshold, describe)
        made.append(watchdog)
        return watchdog

    yield make
    for watchdog in made:
        watchdog.stop()


@pytest.mark.asyncio
async def test_a_blocked_loop_is_reported_once_then_its_recovery(
    caplog: pytest.LogCaptureFixture, make_watchdog: Callable[..., LoopWatchdog]
) -> None:
    watchdog = make_watchdog(describe=lambda: ["send_email (job-1)", "resize (job-2)"])
    watchdog.start()
    await asyncio.create_task(stubborn_job())
    await eventually(lambda: messages(caplog, "responsive again"), within=2)
    watchdog.stop()

    [blocked] = messages(caplog, "event loop blocked for")
    assert "(threshold 0.2 s)" in blocked
    assert "running async job(s): send_email (job-1), resize (job-2)" in blocked
    assert "in block_the_loop\n" in blocked  # the innermost frame: the blocking call's caller
    assert "stubborn_job" in blocked  # the stack summary leads back to the job
    [recovered] = messages(caplog, "event loop responsive again after")
    seconds = float(recovered.rsplit(" ", 2)[-2])
    assert THRESHOLD < seconds <= STALL
    order = [r.getMessage() for r in caplog.records]
    assert order.index(blocked) < order.index(recovered)


@pytest.mark.asyncio
async def test_short_blocks_are_not_reported(
    caplog: pytest.LogCaptureFixture, make_watchdog: Callable[..., LoopWatchdog]
) -> None:
    watchdog = make_watchdog()
    watchdog.start()
    for _ in range(3):
        stay_under_threshold()
        await asyncio.sleep(0)  # let the tick run between the blocks, as between real jobs
    # The watchdog reports stalls in order: once this one is reported, it has looked at the
    # loop through all of the short blocks above, so the absence of their warnings is final.
    block_the_loop(STALL)
    await eventually(lambda: messages(caplog, "responsive again"), within=2)
    watchdog.stop()

    [blocked] = messages(caplog, "event loop blocked for")
    assert "in block_the_loop\n" in blocked
    assert "stay_under_threshold" not in caplog.text


@pytest.mark.asyncio
async def test_describe_failure_is_reported_in_the_warning(
    caplog: pytest.LogCaptureFixture, make_watchdog: Callable[..., LoopWatchdog]
) -> None:
    def careless() -> list[str]:
        raise RuntimeError("dictionary changed size during iteration")

    watchdog = make_watchdog(describe=careless)
    watchdog.start()
    block_the_loop(STALL)
    await eventually(lambda: messages(caplog, "responsive again"), within=2)
    watchdog.stop()

    [blocked] = messages(caplog, "event loop blocked for")
    assert "describe() failed: RuntimeError('dictionary changed size" in blocked
    assert "in block_the_loop\n" in blocked
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.asyncio
async def test_no_running_job_is_said_plainly(
    caplog: pytest.LogCaptureFixture, make_watchdog: Callable[..., LoopWatchdog]
) -> None:
    running: dict[str, str] = {}
    watchdog = make_watchdog(describe=lambda: list(running.values()))
    watchdog.start()
    block_the_loop(STALL)
    await eventually(lambda: messages(caplog, "responsive again"), within=2)
    watchdog.stop()

    [blocked] = messages(caplog, "event loop blocked for")
    assert "(threshold 0.2 s): no async job running; the loop's thread is at " in blocked


@pytest.mark.asyncio
@pytest.mark.parametrize("threshold", [0, -1])
async def test_disabled_watchdog_starts_no_thread(
    threshold: float, make_watchdog: Callable[..., LoopWatchdog]
) -> None:
    watchdog = make_watchdog(threshold=threshold)
    assert not watchdog.enabled
    watchdog.start()
    assert watchdog_threads() == []
    watchdog.stop()


@pytest.mark.asyncio
async def test_stop_joins_the_thread_promptly(make_watchdog: Callable[..., LoopWatchdog]) -> None:
    # A long wait between checks, as a long threshold gives: stop() must not sit it out.
    watchdog = make_watchdog()
    watchdog.interval = 30
    watchdog.start()
    [thread] = watchdog_threads()
    assert thread.daemon
    started = time.monotonic()
    watchdog.stop()
    assert time.monotonic() - started < 1
    assert not thread.is_alive()
    watchdog.stop()  # idempotent


@pytest.mark.asyncio
async def test_start_twice_is_refused(make_watchdog: Callable[..., LoopWatchdog]) -> None:
    watchdog = make_watchdog()
    watchdog.start()
    with pytest.raises(RuntimeError, match="already started"):
        watchdog.start()


def test_start_needs_a_loop() -> None:
    with pytest.raises(RuntimeError, match="none is running"):
        LoopWatchdog(THRESHOLD, list).start()


@pytest.mark.parametrize(
    ("threshold", "interval"), [(0.2, 0.05), (1, 0.25), (30, 0.25), (0.001, 0.01)]
)
def test_interval_is_a_quarter_of_the_threshold_within_bounds(
    threshold: float, interval: float
) -> None:
    assert LoopWatchdog(threshold, list).interval == pytest.approx(interval)

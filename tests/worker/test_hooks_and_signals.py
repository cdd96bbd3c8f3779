"""Hooks (``before_job``, ``after_job``, ``on_error``) and, inside Django, the job signals."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.dispatch import Signal

from soniq import JobContext, JobStatus, Soniq, signals
from soniq.backends.postgres import PostgresBackend
from soniq.worker import Worker
from tests.helpers import conninfo
from tests.worker.conftest import bounded, rows

pytestmark = [pytest.mark.django_db(transaction=True)]

MakeWorker = Callable[..., Worker]


def _register(app: Soniq) -> tuple[Any, Any]:
    @app.job(name="wk.succeeds")
    async def succeeds(n: int) -> int:
        return n * 2

    @app.job(name="wk.fails", retries=0)
    def fails(n: int) -> None:
        raise ValueError(f"nope {n}")

    return succeeds, fails


@pytest.mark.asyncio
async def test_hooks_get_the_context_and_the_result_or_exception(
    app: Soniq, workers: MakeWorker
) -> None:
    succeeds, fails = _register(app)
    events: list[tuple[Any, ...]] = []

    def before(ctx: JobContext) -> None:
        events.append(("before", ctx.job_id, ctx.job_name, ctx.attempt, ctx.worker_id))

    async def after(ctx: JobContext, result: Any) -> None:
        events.append(("after", ctx.job_id, result))

    def error_sync(ctx: JobContext, exc: BaseException) -> None:
        events.append(("error", ctx.job_id, type(exc), str(exc)))

    async def error_async(ctx: JobContext, exc: BaseException) -> None:
        events.append(("error-async", ctx.job_id, type(exc)))

    app.hooks["before_job"].append(before)
    app.hooks["after_job"].append(after)
    app.hooks["on_error"].extend([error_sync, error_async])
    ok = await app.enqueue(succeeds, n=21, priority=1)
    bad = await app.enqueue(fails, n=7, priority=2)
    worker = workers(app)
    assert await bounded(worker.run_once())
    assert events == [
        ("before", ok, "wk.succeeds", 1, worker.id),
        ("after", ok, 42),
        ("before", bad, "wk.fails", 1, worker.id),
        ("error", bad, ValueError, "nope 7"),
        ("error-async", bad, ValueError),
    ]


@pytest.mark.asyncio
async def test_hooks_given_to_the_worker_directly(app: Soniq) -> None:
    succeeds, _ = _register(app)
    seen: list[JobContext] = []
    results: list[Any] = []

    async def before(ctx: JobContext) -> None:
        seen.append(ctx)

    def after(ctx: JobContext, result: Any) -> None:
        results.append(result)

    job_id = await app.enqueue(succeeds, n=5, queue="hooked")
    backend = PostgresBackend(conninfo(), min_size=6, max_size=6)
    worker = Worker(
        backend, app.registry, app.settings, {"before_job": [before], "after_job": [after]}
    )
    try:
        assert await bounded(worker.run_once())
    finally:
        await backend.close()
    [ctx] = seen
    assert (ctx.job_id, ctx.job_name, ctx.queue) == (job_id, "wk.succeeds", "hooked")
    assert (ctx.attempt, ctx.max_attempts, ctx.worker_id) == (1, 4, worker.id)
    assert ctx.scheduled_at is not None and ctx.created_at is not None
    assert results == [10]


@pytest.mark.asyncio
async def test_a_hook_that_raises_is_logged_and_the_job_still_completes(
    app: Soniq, caplog: pytest.LogCaptureFixture
) -> None:
    succeeds, fails = _register(app)

    def broken_before(ctx: JobContext) -> None:
        raise RuntimeError("before hook broke")

    async def broken_after(ctx: JobContext, result: Any) -> None:
        raise RuntimeError("after hook broke")

    def broken_on_error(ctx: JobContext, exc: BaseException) -> None:
        raise RuntimeError("on_error hook broke")

    later: list[str] = []
    app.hooks["before_job"].extend([broken_before, lambda ctx: later.append(ctx.job_id)])
    app.hooks["after_job"].append(broken_after)
    app.hooks["on_error"].append(broken_on_error)
    ok = await app.enqueue(succeeds, n=1)
    bad = await app.enqueue(fails, n=2)
    with caplog.at_level(logging.ERROR, logger="soniq.worker"):
        assert await bounded(app.run_worker(run_once=True))
    info = await app.get_job(ok)
    assert info is not None and info.status is JobStatus.DONE and info.result == 2
    failed = await app.get_job(bad)
    assert failed is not None and failed.status is JobStatus.DEAD_LETTER
    assert failed.errors[-1]["message"] == "nope 2", "the job's error, not the hook's"
    assert sorted(later) == sorted([ok, bad]), "the next hook still ran"
    logged = {
        str(record.exc_info[1])
        for record in caplog.records
        if "hook" in record.getMessage() and record.exc_info
    }
    assert {"before hook broke", "after hook broke", "on_error hook broke"} <= logged


@pytest.mark.parametrize("event", ["before", "after_jobs", "on_failure", ""])
def test_an_unknown_hook_event_is_refused_at_construction(event: str) -> None:
    backend = PostgresBackend("postgresql://unused.invalid/none")  # no I/O before use
    with pytest.raises(ValueError, match="unknown hook event") as raised:
        Worker(
            backend,
            Soniq(database_url="postgresql://unused.invalid/none").registry,
            None,
            {event: [print]},
        )
    assert repr(event) in str(raised.value)
    assert "before_job" in str(raised.value)


def test_an_unknown_event_in_app_hooks_is_refused_by_make_worker() -> None:
    app = Soniq(database_url="postgresql://unused.invalid/none")
    app.hooks["after_jobs"] = [print]
    with pytest.raises(ValueError, match="after_jobs"):
        app.make_worker()


class Receivers:
    """Connects receivers to the soniq signals for one test, and records what they got."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._connected: list[tuple[Signal, Callable[..., None]]] = []

    def connect(self, name: str, signal: Signal, fail: bool = False) -> None:
        def receiver(**kwargs: Any) -> None:
            kwargs.pop("signal")
            self.calls.append((name, kwargs))
            if fail:
                raise RuntimeError(f"{name} receiver broke")

        signal.connect(receiver, weak=False)
        self._connected.append((signal, receiver))

    def disconnect(self) -> None:
        for signal, receiver in self._connected:
            signal.disconnect(receiver)


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    connected = Receivers()
    yield connected
    connected.disconnect()


@pytest.mark.asyncio
async def test_django_signals_fire_with_context_result_and_exception(
    app: Soniq, receivers: Receivers
) -> None:
    succeeds, fails = _register(app)
    receivers.connect("started", signals.job_started)
    receivers.connect("succeeded", signals.job_succeeded)
    receivers.connect("failed", signals.job_failed)
    ok = await app.enqueue(succeeds, n=4, priority=1)
    bad = await app.enqueue(fails, n=9, priority=2)
    assert await bounded(app.run_worker(run_once=True))
    [[worker_id]] = await rows("SELECT id::text FROM soniq_workers")
    names = [name for name, _ in receivers.calls]
    assert names == ["started", "succeeded", "started", "failed"]
    for _, kwargs in receivers.calls:
        assert kwargs["sender"] is app
        assert isinstance(kwargs["context"], JobContext)
        assert kwargs["context"].worker_id == worker_id
    started_ok, succeeded, started_bad, failed = (kwargs for _, kwargs in receivers.calls)
    assert set(started_ok) == {"sender", "context"}
    assert started_ok["context"].job_id == ok
    assert (succeeded["context"].job_id, succeeded["result"]) == (ok, 8)
    assert started_bad["context"].job_id == bad
    assert failed["context"].job_id == bad
    assert isinstance(failed["exception"], ValueError)
    assert str(failed["exception"]) == "nope 9"


@pytest.mark.asyncio
async def test_a_receiver_that_raises_does_not_fail_the_job(
    app: Soniq, receivers: Receivers, caplog: pytest.LogCaptureFixture
) -> None:
    succeeds, _ = _register(app)
    receivers.connect("started", signals.job_started, fail=True)
    receivers.connect("succeeded", signals.job_succeeded, fail=True)
    job_id = await app.enqueue(succeeds, n=3)
    with caplog.at_level(logging.ERROR, logger="soniq.worker"):
        assert await bounded(app.run_worker(run_once=True))
    info = await app.get_job(job_id)
    assert info is not None and info.status is JobStatus.DONE and info.result == 6
    assert [name for name, _ in receivers.calls] == ["started", "succeeded"]
    assert any(
        record.exc_info and "receiver broke" in str(record.exc_info[1]) for record in caplog.records
    )


@pytest.mark.asyncio
async def test_a_worker_built_without_make_worker_sends_no_signals(
    app: Soniq, receivers: Receivers
) -> None:
    succeeds, _ = _register(app)
    receivers.connect("started", signals.job_started)
    await app.enqueue(succeeds, n=1)
    backend = PostgresBackend(conninfo(), min_size=6, max_size=6)
    try:
        assert await bounded(Worker(backend, app.registry, app.settings).run_once())
    finally:
        await backend.close()
    assert receivers.calls == []

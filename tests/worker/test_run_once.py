"""``run_once``: drain what is due, one job after another, in the test's event loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, Field

from soniq import JobContext, JobStatus, Soniq
from soniq.worker import Worker
from tests.worker.conftest import bounded, make_app, rows, status_of

pytestmark = [pytest.mark.django_db(transaction=True)]

MakeWorker = Callable[..., Worker]


async def once(app: Soniq, **kwargs: Any) -> bool:
    return await bounded(app.run_worker(run_once=True, **kwargs))


async def _job(app: Soniq, job_id: str) -> Any:
    info = await app.get_job(job_id)
    assert info is not None, job_id
    return info


@pytest.mark.asyncio
async def test_run_worker_once_is_false_when_idle_and_true_after_running(app: Soniq) -> None:
    @app.job(name="wk.add")
    async def add(a: int, b: int) -> int:
        return a + b

    assert await once(app) is False
    job_id = await app.enqueue(add, a=2, b=3)
    assert await once(app) is True
    info = await _job(app, job_id)
    assert info.status is JobStatus.DONE
    assert info.result == 5
    assert info.attempts == 1
    assert info.started_at is not None and info.finished_at is not None
    assert info.finished_at >= info.started_at
    assert info.errors == []
    # Nothing left: the next pass runs nothing.
    assert await once(app) is False


@pytest.mark.asyncio
async def test_max_jobs_stops_after_that_many(app: Soniq, workers: MakeWorker) -> None:
    ran: list[int] = []

    @app.job(name="wk.count")
    async def count(n: int) -> None:
        ran.append(n)

    ids = await app.enqueue_many(count, [{"n": n} for n in range(5)])
    worker = workers(app)
    assert await bounded(worker.run_once(max_jobs=2)) is True
    assert len(ran) == 2
    statuses = [await status_of(job_id) for job_id in ids]
    assert statuses.count("done") == 2
    assert statuses.count("queued") == 3
    with pytest.raises(ValueError, match="max_jobs"):
        await bounded(worker.run_once(max_jobs=0))
    assert await bounded(worker.run_once()) is True
    assert sorted(ran) == [0, 1, 2, 3, 4]
    assert [await status_of(job_id) for job_id in ids] == ["done"] * 5


@pytest.mark.asyncio
async def test_results_are_stored_as_json(app: Soniq) -> None:
    value = {"name": "Zoë ✓", "items": [1, 2.5, True, None, {"deep": ["x"]}], "n": -7}

    @app.job(name="wk.structure")
    async def structure() -> dict[str, Any]:
        return value

    @app.job(name="wk.nothing")
    def nothing() -> None:
        return None

    @app.job(name="wk.text")
    def text() -> str:
        return "plain"

    structured, empty, plain = (
        await app.enqueue(structure),
        await app.enqueue(nothing),
        await app.enqueue(text),
    )
    assert await once(app)
    assert (await _job(app, structured)).result == value
    assert (await _job(app, empty)).result is None
    assert (await _job(app, plain)).result == "plain"
    stored = await rows(
        "SELECT jsonb_typeof(result) FROM soniq_jobs WHERE id = ANY(%s::uuid[]) ORDER BY 1",
        ([structured, plain],),
    )
    assert stored == [("object",), ("string",)]


@pytest.mark.asyncio
async def test_lowest_priority_number_first_then_earliest_scheduled(app: Soniq) -> None:
    order: list[str] = []

    @app.job(name="wk.record")
    async def record(label: str) -> None:
        order.append(label)

    now = datetime.now(UTC)
    # Enqueued in an order that is neither the creation nor the expected order.
    await app.enqueue(record, label="lax", priority=500, scheduled_at=now - timedelta(minutes=9))
    await app.enqueue(record, label="urgent-later", priority=5, scheduled_at=now - timedelta(1))
    await app.enqueue(record, label="normal", priority=100, scheduled_at=now - timedelta(hours=1))
    await app.enqueue(record, label="urgent-earlier", priority=5, scheduled_at=now - timedelta(2))
    await app.enqueue(record, label="most-urgent", priority=1)
    assert await once(app)
    assert order == ["most-urgent", "urgent-earlier", "urgent-later", "normal", "lax"]


@pytest.mark.asyncio
async def test_a_job_scheduled_in_the_future_is_not_run(app: Soniq) -> None:
    ran: list[str] = []

    @app.job(name="wk.later")
    async def later(label: str) -> None:
        ran.append(label)

    future = await app.schedule(later, 3600, label="future")
    assert await once(app) is False
    now_id = await app.enqueue(later, label="now")
    assert await once(app) is True
    assert ran == ["now"]
    info = await _job(app, future)
    assert info.status is JobStatus.QUEUED
    assert info.attempts == 0 and info.worker_id is None
    assert (await _job(app, now_id)).status is JobStatus.DONE


@pytest.mark.asyncio
async def test_an_unregistered_task_name_is_never_claimed(app: Soniq) -> None:
    @app.job(name="wk.known")
    async def known() -> str:
        return "ran"

    stranger = await app.enqueue("wk.not_registered_here", args={"x": 1}, priority=1)
    mine = await app.enqueue(known)
    assert await once(app) is True
    assert (await _job(app, mine)).result == "ran"
    info = await _job(app, stranger)
    assert info.status is JobStatus.QUEUED
    assert (info.attempts, info.worker_id, info.errors) == (0, None, [])
    assert await rows("SELECT id FROM soniq_dead_letter_jobs") == []
    assert await once(app) is False


@pytest.mark.asyncio
async def test_queues_limit_what_is_claimed(app: Soniq) -> None:
    @app.job(name="wk.anywhere")
    async def anywhere(label: str) -> str:
        return label

    alpha = await app.enqueue(anywhere, label="a", queue="alpha")
    beta = await app.enqueue(anywhere, label="b", queue="beta")
    default = await app.enqueue(anywhere, label="d")
    assert await once(app, queues=["alpha"]) is True
    assert [await status_of(i) for i in (alpha, beta, default)] == ["done", "queued", "queued"]
    assert await once(app, queues=["alpha"]) is False
    assert await once(app, queues=["beta", "default"]) is True
    assert [await status_of(i) for i in (alpha, beta, default)] == ["done"] * 3


@pytest.mark.asyncio
async def test_the_queues_setting_scopes_a_worker_too() -> None:
    app = make_app(queues=["beta"])
    try:

        @app.job(name="wk.scoped")
        async def scoped() -> None:
            return None

        alpha = await app.enqueue(scoped, queue="alpha")
        beta = await app.enqueue(scoped, queue="beta")
        assert await once(app) is True
        assert [await status_of(alpha), await status_of(beta)] == ["queued", "done"]
    finally:
        await app.close()


@pytest.mark.asyncio
async def test_async_jobs_run_on_the_loop_and_sync_jobs_in_a_worker_thread(app: Soniq) -> None:
    @app.job(name="wk.async_thread")
    async def async_thread() -> str:
        return threading.current_thread().name

    @app.job(name="wk.sync_thread")
    def sync_thread() -> str:
        return threading.current_thread().name

    on_loop = await app.enqueue(async_thread)
    in_thread = await app.enqueue(sync_thread)
    assert await once(app)
    assert (await _job(app, on_loop)).result == threading.current_thread().name
    assert (await _job(app, in_thread)).result.startswith("soniq-job")


class Item(BaseModel):
    sku: str
    quantity: int = 1


class ShipmentArgs(BaseModel):
    ship_at: datetime
    item: Item
    note: str = "none"


@pytest.mark.asyncio
async def test_a_validated_job_receives_the_models_python_values(app: Soniq) -> None:
    @app.job(name="wk.ship", validate=ShipmentArgs)
    def ship(ship_at: datetime, item: Item, note: str) -> dict[str, Any]:
        return {
            "ship_at": type(ship_at).__name__,
            "aware": ship_at.tzinfo is not None,
            "iso": ship_at.isoformat(),
            "item": type(item).__name__,
            "quantity": item.quantity,
            "note": note,
        }

    when = datetime(2030, 5, 17, 8, 30, tzinfo=UTC)
    job_id = await app.enqueue(ship, ship_at=when, item={"sku": "A-1"})
    stored = await _job(app, job_id)
    assert stored.args["ship_at"].startswith("2030-05-17T08:30")  # the model's JSON dump
    assert await once(app)
    info = await _job(app, job_id)
    assert info.status is JobStatus.DONE, info.errors
    assert info.result == {
        "ship_at": "datetime",
        "aware": True,
        "iso": when.isoformat(),
        "item": "Item",
        "quantity": 1,
        "note": "none",
    }


class AliasedArgs(BaseModel):
    sender: str = Field(alias="from")
    count: int = 1


@pytest.mark.asyncio
async def test_a_validated_job_whose_model_has_an_aliased_field(app: Soniq) -> None:
    """Enqueue accepts a field alias (documented); the stored dump uses field names. The
    worker must be able to validate what enqueue stored."""

    @app.job(name="wk.aliased", validate=AliasedArgs, retries=0)
    async def aliased(sender: str, count: int) -> str:
        return f"{sender} x{count}"

    job_id = await app.enqueue("wk.aliased", args={"from": "alice", "count": 2})
    assert (await _job(app, job_id)).args == {"sender": "alice", "count": 2}
    assert await once(app)
    info = await _job(app, job_id)
    assert info.status is JobStatus.DONE, info.errors
    assert info.result == "alice x2"


@pytest.mark.asyncio
async def test_a_non_json_result_is_done_with_a_readable_trace(
    app: Soniq, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[int] = []

    @app.job(name="wk.returns_a_set")
    async def returns_a_set() -> set[int]:
        runs.append(1)
        return {1, 2}

    job_id = await app.enqueue(returns_a_set)
    with caplog.at_level("WARNING", logger="soniq.worker"):
        assert await once(app)
    info = await _job(app, job_id)
    assert info.status is JobStatus.DONE
    assert info.result == {"unserializable_result": "{1, 2}"}
    assert info.errors == []
    assert runs == [1], "a finished job is not run again"
    assert any("not JSON" in record.getMessage() for record in caplog.records)


@pytest.mark.asyncio
async def test_failures_retry_at_once_until_dead_lettered_with_every_error(
    app: Soniq, workers: MakeWorker
) -> None:
    attempts: list[int] = []

    @app.job(name="wk.always_fails", retries=2, retry_delay=0)
    async def always_fails(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        raise ValueError(f"boom on attempt {ctx.attempt}")

    job_id = await app.enqueue(always_fails)
    worker = workers(app)
    assert await bounded(worker.run_once()) is True
    assert attempts == [1, 2, 3]
    info = await _job(app, job_id)
    assert info.status is JobStatus.DEAD_LETTER
    assert info.dead_letter_reason == "max_attempts"
    assert (info.attempts, info.max_attempts) == (3, 3)
    assert [error["attempt"] for error in info.errors] == [1, 2, 3]
    for n, error in enumerate(info.errors, start=1):
        assert error["error_type"] == "builtins.ValueError"
        assert error["message"] == f"boom on attempt {n}"
        assert f"ValueError: boom on attempt {n}" in error["traceback"]
        assert "always_fails" in error["traceback"]
        assert error["worker_id"] == worker.id
        assert datetime.fromisoformat(error["failed_at"]).tzinfo is not None
    assert await rows("SELECT id FROM soniq_jobs") == []
    [[reason, worker_id]] = await rows("SELECT reason, worker_id::text FROM soniq_dead_letter_jobs")
    assert (reason, worker_id) == ("max_attempts", worker.id)


@pytest.mark.asyncio
async def test_a_job_that_succeeds_on_retry_keeps_its_earlier_error(app: Soniq) -> None:
    @app.job(name="wk.flaky", retries=3)
    def flaky(ctx: JobContext) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first try fails")
        return ctx.attempt

    job_id = await app.enqueue(flaky)
    assert await once(app)
    info = await _job(app, job_id)
    assert info.status is JobStatus.DONE
    assert (info.result, info.attempts) == (2, 2)
    assert [(e["attempt"], e["error_type"]) for e in info.errors] == [(1, "builtins.RuntimeError")]


@pytest.mark.asyncio
async def test_arguments_that_do_not_fit_the_function_fail_the_attempt(app: Soniq) -> None:
    """Enqueued by another process that does not know the job (so nothing checked the
    arguments): a failed attempt with a TypeError, not a crashed worker."""

    @app.job(name="wk.strict", retries=0)
    async def strict(a: int) -> int:
        return a

    producer = make_app()
    try:
        job_id = await producer.enqueue("wk.strict", args={"a": 1, "unexpected": 2})
    finally:
        await producer.close()
    assert await once(app)
    info = await _job(app, job_id)
    assert info.status is JobStatus.DEAD_LETTER
    assert info.errors[-1]["error_type"] == "builtins.TypeError"
    assert "unexpected" in info.errors[-1]["message"]

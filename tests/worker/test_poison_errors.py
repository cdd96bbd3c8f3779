"""Failures whose text PostgreSQL cannot store as it is (a NUL, a lone surrogate) or that is
huge are recorded anyway, escaped and cut, next to healthy jobs: no write retries forever."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from soniq import Soniq
from soniq.worker import Worker
from tests.worker.conftest import eventually, make_app, running, status_of

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.mark.asyncio
async def test_poison_errors_are_recorded_escaped_and_cut(
    workers: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    app: Soniq = make_app(error_message_limit=1000, traceback_limit=2000)
    try:

        @app.job(name="poison.nul", retries=0)
        def nul() -> None:
            raise ValueError("ab\x00cd")

        @app.job(name="poison.surrogate", retries=0)
        def surrogate() -> None:
            raise ValueError("caf\udce9.txt")

        @app.job(name="poison.huge", retries=0)
        def huge() -> None:
            raise ValueError("X" * 5 * 2**20 + "\nINFO forged line")

        @app.job(name="poison.healthy")
        def healthy(n: int) -> int:
            return n

        poison = [await app.enqueue(job) for job in (nul, surrogate, huge)]
        healthy_ids = await app.enqueue_many(healthy, [{"n": n} for n in range(20)])
        with caplog.at_level(logging.WARNING, logger="soniq.worker"):
            async with running(workers(app), concurrency=4):
                for job_id in [*poison, *healthy_ids]:
                    await eventually(lambda job_id=job_id: _settled(job_id), within=15)
        for n, job_id in enumerate(healthy_ids):
            info = await app.get_job(job_id)
            assert info is not None and (info.status.value, info.result) == ("done", n)
        messages = []
        for job_id in poison:
            info = await app.get_job(job_id)
            assert info is not None and info.status.value == "dead_letter", job_id
            [error] = info.errors
            messages.append(error["message"])
            assert len(error["traceback"]) <= 2000 + 40
        assert messages[0] == "ab\\x00cd"
        assert messages[1] == "caf\\udce9.txt"
        assert messages[2].startswith("X" * 1000) and "more characters cut" in messages[2]
        assert len(messages[2]) <= 1000 + 40
        lines = [
            record.getMessage() for record in caplog.records if "poison.huge" in record.getMessage()
        ]
        [failed] = [line for line in lines if "failed" in line]
        assert "\n" not in failed and len(failed) < 1000, "one bounded line"
    finally:
        await app.close()


async def _settled(job_id: str) -> bool:
    return await status_of(job_id) in ("done", "dead_letter")


@pytest.mark.asyncio
async def test_results_that_cannot_be_stored_do_not_hold_up_the_batch(
    app: Soniq, workers: Callable[..., Worker]
) -> None:
    @app.job(name="poison.result")
    def poison_result(kind: str) -> dict[str, str]:
        return {"f": "caf\udce9.txt"} if kind == "surrogate" else {"s": "a\x00b"}

    @app.job(name="poison.fine")
    def fine(n: int) -> int:
        return n

    poison = [await app.enqueue(poison_result, kind=kind) for kind in ("surrogate", "nul")]
    healthy = await app.enqueue_many(fine, [{"n": n} for n in range(20)])
    async with running(workers(app), concurrency=4):
        for job_id in [*poison, *healthy]:
            await eventually(lambda job_id=job_id: _settled(job_id), within=15)
    for job_id in poison:
        info = await app.get_job(job_id)
        assert info is not None and info.status.value == "done"
        assert set(info.result) == {"unserializable_result"}, info.result
    for n, job_id in enumerate(healthy):
        info = await app.get_job(job_id)
        assert info is not None and info.result == n

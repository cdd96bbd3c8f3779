"""Failures whose text PostgreSQL cannot store as it is (a NUL, a lone surrogate) or that is
huge are recorded anyway, escaped and cut, next to healthy jobs: no write retries forever."""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from soniq import JobContext, Soniq
from soniq.worker import Worker
from tests.worker.conftest import eventually, make_app, rows, running, status_of

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
async def test_poison_results_next_to_healthy_jobs_end_visibly_and_run_once(
    workers: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    """Text PostgreSQL cannot store is escaped, a value JSON cannot hold is kept as a masked
    trace, a result over MAX_RESULT_BYTES dead-letters its job, and a result the database
    refuses (a number too large for jsonb) gets a placeholder; 20 healthy jobs finishing in
    the same batches are all done, and every job ran exactly once."""
    app: Soniq = make_app(max_result_bytes=256 * 1024)
    runs: Counter[str] = Counter()
    try:

        @app.job(name="poison.result", retries=3)
        def poison_result(kind: str, ctx: JobContext) -> Any:
            runs[ctx.job_id] += 1
            return POISON[kind]()

        @app.job(name="poison.fine")
        def fine(n: int, ctx: JobContext) -> int:
            runs[ctx.job_id] += 1
            return n

        kinds = list(POISON)
        poison = {kind: await app.enqueue(poison_result, kind=kind) for kind in kinds}
        healthy = await app.enqueue_many(fine, [{"n": n} for n in range(20)])
        every = [*poison.values(), *healthy]
        previous = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(0)  # lets the job's huge number reach the database
        try:
            with caplog.at_level(logging.WARNING, logger="soniq.worker"):
                async with running(workers(app), concurrency=8):
                    for job_id in every:
                        await eventually(lambda job_id=job_id: _settled(job_id), within=20)
        finally:
            sys.set_int_max_str_digits(previous)
        assert all(runs[job_id] == 1 for job_id in every), runs

        infos = {kind: await app.get_job(job_id) for kind, job_id in poison.items()}
        assert infos["surrogate"].result == {"f": "caf\\udce9.txt"}  # type: ignore[union-attr]
        assert infos["nul"].result == {"s": "a\\x00b", "k\\x00": 1}  # type: ignore[union-attr]
        trace = infos["object"].result["unserializable_result"]  # type: ignore[union-attr]
        assert trace.startswith("{'password': '********'") and "hunter22" not in trace
        assert "{1, 2}" in trace
        too_large = infos["too_large"]
        assert too_large is not None and too_large.status.value == "dead_letter"
        [error] = too_large.errors
        assert error["error_type"].endswith("ResultTooLargeError")
        assert "MAX_RESULT_BYTES" in error["message"]
        assert await _reason(poison["too_large"]) == "result_too_large"
        refused = infos["huge_number"]
        assert refused is not None and refused.status.value == "done"
        assert refused.result["unstorable_result"].startswith("not stored: ")  # type: ignore[index]
        for n, job_id in enumerate(healthy):
            info = await app.get_job(job_id)
            assert info is not None and (info.status.value, info.result) == ("done", n)
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert "stored escaped" in logged and "not JSON" in logged
        assert "refused the result" in logged
        assert "hunter22" not in logged
    finally:
        await app.close()


POISON: dict[str, Callable[[], Any]] = {
    "surrogate": lambda: {"f": os.fsdecode(b"caf\xe9.txt")},
    "nul": lambda: {"s": "a\x00b", "k\x00": 1},
    "object": lambda: {"password": "hunter22", "when": {1, 2}},
    "too_large": lambda: {"blob": "x" * 300 * 1024},
    # jsonb numbers have at most 131072 digits before the point: the database refuses it.
    "huge_number": lambda: {"n": 10**140000},
}


async def _reason(job_id: str) -> str:
    [[reason]] = await rows("SELECT reason FROM soniq_dead_letter_jobs WHERE id = %s", (job_id,))
    return str(reason)

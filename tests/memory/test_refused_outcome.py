"""A failure whose record the store refuses even stripped of its texts: the worker keeps the
job claimed (never released as a stray, never run again at once) and ends; recovery takes it
back once the worker is gone."""

from __future__ import annotations

from typing import Any

import pytest

from soniq import JobStatus
from soniq.backends.memory import MemoryBackend
from soniq.worker import Worker
from tests.memory.conftest import bounded, memory_app


class DataError(Exception):
    """A store's refusal of the data itself (PEP 249's name)."""


class RefusingBackend(MemoryBackend):
    """Refuses every retry and dead-letter write, whatever the error record holds."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    async def retry_job(self, *args: Any, **kwargs: Any) -> bool:
        self.refused += 1
        raise DataError("refused")

    async def dead_letter_job(self, *args: Any, **kwargs: Any) -> bool:
        self.refused += 1
        raise DataError("refused")


@pytest.mark.asyncio
async def test_a_refused_outcome_is_held_not_looped() -> None:
    backend = RefusingBackend()
    app = memory_app(backend)
    runs: list[int] = []

    @app.job(name="refused.fails", retries=3)
    def fails() -> None:
        runs.append(1)
        raise ValueError("boom")

    job_id = await app.enqueue(fails)
    worker = Worker(backend, app.registry, app.settings)
    await bounded(worker.run_once())
    assert runs == [1], "ran once: not released and claimed again"
    assert backend.refused == 2, "the record, then the stripped record: then it stops"
    info = await app.get_job(job_id)
    assert info is not None and info.status is JobStatus.PROCESSING, "left to recovery"
    assert job_id in worker._in_flight_ids(), "held: never released as a stray"

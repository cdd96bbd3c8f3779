"""The error history's cap on the memory backend: the rule itself, the setting it reads, and a
lowered limit (a history longer than it is cut at the next append, every dropped entry
counted)."""

from __future__ import annotations

import pytest

from soniq.backends.error_history import DEFAULT_HISTORY_LIMIT, append_capped
from soniq.backends.memory import MemoryBackend
from soniq.core.settings import SoniqSettings
from tests.memory.conftest import FakeClock, error, new_job, register

TASK = "mem.task"


def test_append_capped_keeps_the_newest_and_says_how_many_went() -> None:
    entries = ["a", "b"]
    assert append_capped(entries, "c", 3) == 0
    assert entries == ["a", "b", "c"]
    assert append_capped(entries, "d", 3) == 1
    assert entries == ["b", "c", "d"]
    assert append_capped(entries, "e", 1) == 3
    assert entries == ["e"]


def test_the_backend_takes_its_limit_from_the_settings() -> None:
    assert MemoryBackend().settings.error_history_limit == DEFAULT_HISTORY_LIMIT == 20
    limited = MemoryBackend(settings=SoniqSettings(error_history_limit=2))
    assert limited.settings.error_history_limit == 2


async def _fail(backend: MemoryBackend, worker: str, job_id: str, attempt: int) -> None:
    [claimed] = await backend.claim_jobs(worker, [TASK], None, 1)
    assert (claimed.id, claimed.attempt) == (job_id, attempt)
    assert await backend.retry_job(worker, job_id, attempt, 0, error(attempt, worker))


@pytest.mark.asyncio
async def test_a_lowered_limit_cuts_the_history_at_the_next_append(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock, settings=SoniqSettings(error_history_limit=5))
    job = new_job(max_attempts=10)
    [job_id] = backend.insert_jobs_sync([job])
    worker = await register(backend)
    for attempt in range(1, 6):
        await _fail(backend, worker, job_id, attempt)
    info = backend.get_job_sync(job_id)
    assert info is not None and (len(info.errors), info.errors_dropped) == (5, 0)

    backend.settings = SoniqSettings(error_history_limit=2)
    await _fail(backend, worker, job_id, 6)
    info = backend.get_job_sync(job_id)
    assert info is not None
    assert [entry["attempt"] for entry in info.errors] == [5, 6]
    assert info.errors_dropped == 4

"""Fixtures for the in-memory backend: a clock tests move by hand, a backend on it, an app
whose storage is that backend, and deadline-bounded waiting."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from soniq import Soniq, _integration
from soniq.backends.memory import MemoryBackend
from soniq.core.records import NewJob, WorkerInfo
from soniq.worker import Worker
from tests.helpers import bounded, eventually

T = TypeVar("T")

# Short intervals so that every loop of an in-process worker turns quickly.
FAST: dict[str, Any] = {
    "poll_interval": 0.05,
    "heartbeat_interval": 0.05,
    "heartbeat_timeout": 30,
    "shutdown_timeout": 2,
    "error_retry_delay": 0.05,
}
DEADLINE = 10.0


class FakeClock:
    """The backend's "database clock": it stands still until a test moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start if start is not None else datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(clock: FakeClock) -> MemoryBackend:
    return MemoryBackend(clock=clock)


def memory_app(backend: MemoryBackend, **overrides: Any) -> Soniq:
    """A Soniq app whose storage is ``backend`` (set by hand, with the key its ``backend``
    property compares, so the property keeps returning it)."""
    app = Soniq(database_url="postgresql://unused", **{**FAST, **overrides})
    settings = app.settings
    app._backend = backend
    app._backend_key = (
        settings.database_url,
        settings.database,
        _integration.django_is_configured(),
    )
    assert app.backend is backend
    return app


def new_job(
    task_name: str = "mem.task",
    *,
    args: dict[str, Any] | None = None,
    queue: str = "default",
    priority: int = 100,
    max_attempts: int = 3,
    scheduled_at: datetime | None = None,
    dedup_key: str | None = None,
) -> NewJob:
    values = args if args is not None else {}
    return NewJob(
        id=uuid.uuid4(),
        task_name=task_name,
        args=values,
        args_json=json.dumps(values),
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        scheduled_at=scheduled_at,
        dedup_key=dedup_key,
    )


async def register(
    backend: MemoryBackend, task_names: tuple[str, ...] = ("mem.task",), lock_key: int | None = None
) -> str:
    worker_id = str(uuid.uuid4())
    info = WorkerInfo(
        id=worker_id,
        hostname="test-host",
        pid=os.getpid(),
        queues=None,
        task_names=task_names,
        concurrency=2,
        version="test",
    )
    await backend.register_worker(info, lock_key)
    return worker_id


def error(attempt: int, worker_id: str, message: str = "failed") -> dict[str, Any]:
    return {
        "attempt": attempt,
        "error_type": "builtins.ValueError",
        "message": message,
        "traceback": "",
        "failed_at": "2030-01-01T00:00:00+00:00",
        "worker_id": worker_id,
    }


@asynccontextmanager
async def running(worker: Worker, **run_kwargs: Any) -> AsyncIterator[asyncio.Task[bool]]:
    """``worker.run()`` in a task, registered before the body starts; stopped after it."""
    backend = worker.backend
    assert isinstance(backend, MemoryBackend)
    task = asyncio.create_task(worker.run(**run_kwargs))
    try:
        await eventually(lambda: task.done() or backend.worker_status(worker.id) == "running")
        yield task
    finally:
        worker.stop()
        await bounded(asyncio.shield(task))

"""Shared by the backends' error-history tests: a job to fail, a worker to fail it under."""

from __future__ import annotations

import os
import uuid
from typing import Any

from soniq.core.records import NewJob, WorkerInfo


def new_job(task: str) -> NewJob:
    """A queued job of ``task`` with attempts to spare (10)."""
    return NewJob(
        id=uuid.uuid4(),
        task_name=task,
        args={},
        args_json="{}",
        queue="default",
        priority=100,
        max_attempts=10,
    )


async def register(backend: Any, task: str) -> str:
    """A worker serving ``task``, registered in ``backend``; its id."""
    info = WorkerInfo(str(uuid.uuid4()), "test-host", os.getpid(), None, (task,), 1, "test")
    await backend.register_worker(info, None)
    return info.id


def entry(attempt: int) -> dict[str, object]:
    """The error record of failed attempt ``attempt``."""
    return {"attempt": attempt, "error_type": "builtins.ValueError", "message": "no"}
